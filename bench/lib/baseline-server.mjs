// The baseline: @y/websocket-server 0.1.1, set up exactly as its own bin
// (src/server.js) does, with the ws it ships with, except that it listens on
// 127.0.0.1 port 0 and prints the bound port as one JSON line. Persistence is
// its own y-leveldb one, switched on by YPERSISTENCE as with the bin.
// Plain JavaScript run by plain node: no loader between the baseline and V8.
import http from 'node:http';
import { createRequire } from 'node:module';

const requireFromServer = createRequire(import.meta.resolve('@y/websocket-server/package.json'));
const WebSocket = requireFromServer('ws');
const { setupWSConnection } = await import('@y/websocket-server/utils');

const wss = new WebSocket.Server({ noServer: true });
const server = http.createServer((_request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/plain' });
  response.end('okay');
});
wss.on('connection', setupWSConnection);
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => {
    wss.emit('connection', ws, request);
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ msg: 'listening', port: server.address().port }) + '\n');
});
process.once('SIGTERM', () => process.exit(0));

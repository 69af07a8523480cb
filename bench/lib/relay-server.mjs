// A bare WebSocket relay for row 2's hop figure: every message one client
// sends goes to every other client, as is, with no Yjs and no storage. The
// same ws library and the same child-process setup as the baseline server,
// so two hops through it are what two loopback hops cost on this machine.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const other of wss.clients) if (other !== ws) other.send(data, { binary: isBinary });
  });
});
wss.on('listening', () => {
  process.stdout.write(JSON.stringify({ msg: 'listening', port: wss.address().port }) + '\n');
});
process.once('SIGTERM', () => process.exit(0));

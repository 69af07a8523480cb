import * as Y from 'yjs';

/**
 * The document as JSON (DESIGN.md §7). Root types that arrived by update have
 * no declared type, so each is inferred on a scratch copy (typing a live root
 * is permanent): only map entries → object; string, format or embed content →
 * string; XML content → XML string; anything else → array; empty roots left out.
 */
export function docToJson(doc: Y.Doc): Record<string, unknown> {
  const scratch = new Y.Doc({ gc: true });
  Y.applyUpdate(scratch, Y.encodeStateAsUpdate(doc));
  const out: Record<string, unknown> = {};
  for (const [name, type] of [...scratch.share].sort(([a], [b]) => a.localeCompare(b))) {
    const kind = inferKind(type);
    if (kind === 'map') out[name] = scratch.getMap(name).toJSON();
    else if (kind === 'text') out[name] = scratch.getText(name).toString();
    else if (kind === 'xml') out[name] = scratch.getXmlFragment(name).toString();
    else if (kind === 'array') out[name] = scratch.getArray(name).toJSON();
  }
  scratch.destroy();
  return out;
}

function inferKind<T>(type: Y.AbstractType<T>): 'map' | 'text' | 'xml' | 'array' | 'empty' {
  if (type instanceof Y.Map) return type.size ? 'map' : 'empty';
  if (type instanceof Y.Text) return type.length ? 'text' : 'empty';
  if (type instanceof Y.XmlFragment) return type.length ? 'xml' : 'empty';
  if (type instanceof Y.Array) return type.length ? 'array' : 'empty';
  let item = type._start;
  let sawList = false;
  while (item) {
    if (!item.deleted) {
      sawList = true;
      const c = item.content;
      if (c instanceof Y.ContentString || c instanceof Y.ContentFormat || c instanceof Y.ContentEmbed) return 'text';
      if (c instanceof Y.ContentType && (c.type instanceof Y.XmlElement || c.type instanceof Y.XmlText || c.type instanceof Y.XmlHook)) return 'xml';
      return 'array';
    }
    item = item.right;
  }
  if (sawList) return 'array';
  for (const item of type._map.values()) if (!item.deleted) return 'map';
  return 'empty';
}

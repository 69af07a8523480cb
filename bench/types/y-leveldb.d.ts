// y-leveldb 0.1.2 ships types that its package.json "exports" does not
// expose; the part of its API the fixture builder uses.
declare module 'y-leveldb' {
  export class LeveldbPersistence {
    constructor(location: string);
    storeUpdate(docName: string, update: Uint8Array): Promise<number>;
    destroy(): Promise<void>;
  }
}

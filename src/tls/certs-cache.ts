// A bounded LRU of values made asynchronously: one make() per key at a time (concurrent requests for a
// key share the promise in flight), a failed make() is not remembered, and a value that is no longer
// fresh is made again.

export class MintCache<V> {
  private readonly done = new Map<string, V>();
  private readonly pending = new Map<string, Promise<V>>();
  hits = 0;
  made = 0;

  constructor(
    readonly max: number,
    private readonly fresh: (v: V) => boolean = () => true,
  ) {
    if (!(max >= 1)) throw new RangeError(`cache size must be at least 1, not ${max}`);
  }

  get size(): number {
    return this.done.size;
  }

  /** The cached value (the same object every time), or the one make() yields. */
  get(key: string, make: () => Promise<V>): Promise<V> {
    const v = this.done.get(key);
    if (v !== undefined && this.fresh(v)) {
      // Map keeps insertion order: re-inserting makes this the most recently used.
      this.done.delete(key);
      this.done.set(key, v);
      this.hits++;
      return Promise.resolve(v);
    }
    this.done.delete(key);
    const inFlight = this.pending.get(key);
    if (inFlight) {
      this.hits++;
      return inFlight;
    }
    const p = make().then(
      (made) => {
        this.pending.delete(key);
        this.made++;
        this.done.set(key, made);
        while (this.done.size > this.max) this.done.delete(this.done.keys().next().value as string);
        return made;
      },
      (e: unknown) => {
        this.pending.delete(key);
        throw e;
      },
    );
    this.pending.set(key, p);
    return p;
  }

  clear(): void {
    this.done.clear();
  }
}

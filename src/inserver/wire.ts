/**
 * The frames between a worker's backend (the bgworker C extension) and its Node child, on the child's fd 3
 * (docs/in-server.md): a 4-byte big-endian body length, then the body: one type byte and its fields. A
 * string is a 4-byte length and its UTF-8 bytes (0xFFFFFFFF: null); integers are big-endian.
 */

const NULL_LENGTH = 0xffffffff;

/** Builds one frame. */
export class FrameWriter {
  readonly #chunks: Buffer[] = [];
  #length = 0;

  constructor(type: string) {
    this.#push(Buffer.from(type, "latin1"));
  }

  #push(chunk: Buffer): this {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    return this;
  }

  u8(value: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(value);
    return this.#push(b);
  }

  u32(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(value >>> 0);
    return this.#push(b);
  }

  i32(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(value);
    return this.#push(b);
  }

  str(value: string | null | undefined): this {
    if (value === null || value === undefined) return this.u32(NULL_LENGTH);
    const bytes = Buffer.from(value, "utf8");
    this.u32(bytes.length);
    return this.#push(bytes);
  }

  toBuffer(): Buffer {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(this.#length);
    return Buffer.concat([header, ...this.#chunks], 4 + this.#length);
  }
}

/** Reads the fields of one frame's body (after its type byte). */
export class FrameReader {
  #pos = 0;

  constructor(
    readonly type: string,
    private readonly body: Buffer,
  ) {}

  u8(): number {
    const value = this.body.readUInt8(this.#pos);
    this.#pos += 1;
    return value;
  }

  u32(): number {
    const value = this.body.readUInt32BE(this.#pos);
    this.#pos += 4;
    return value;
  }

  u64(): bigint {
    const value = this.body.readBigUInt64BE(this.#pos);
    this.#pos += 8;
    return value;
  }

  str(): string | null {
    const length = this.u32();
    if (length === NULL_LENGTH) return null;
    const value = this.body.toString("utf8", this.#pos, this.#pos + length);
    this.#pos += length;
    return value;
  }
}

/** Splits a byte stream into frames. */
export class FrameStream {
  #buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): FrameReader[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const frames: FrameReader[] = [];
    let pos = 0;
    while (this.#buffer.length - pos >= 5) {
      const length = this.#buffer.readUInt32BE(pos);
      if (this.#buffer.length - pos - 4 < length) break;
      const type = String.fromCharCode(this.#buffer[pos + 4]!);
      frames.push(new FrameReader(type, this.#buffer.subarray(pos + 5, pos + 4 + length)));
      pos += 4 + length;
    }
    this.#buffer = this.#buffer.subarray(pos);
    return frames;
  }
}

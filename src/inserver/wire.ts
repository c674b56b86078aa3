/**
 * The frames between a worker's backend (the bgworker C extension) and its Node child, on the child's fd 3
 * (docs/in-server.md): a 4-byte big-endian body length, then the body: one type byte and its fields. A
 * string is a 4-byte length and its UTF-8 bytes (0xFFFFFFFF: null); integers are big-endian.
 */

const NULL_LENGTH = 0xffffffff;

/**
 * Builds one frame in one buffer, its length written last: one allocation for most frames and no copy to
 * join parts, so that a request is one `write()` of one buffer.
 */
export class FrameWriter {
  #buffer: Buffer;
  #pos = 5;

  constructor(type: string, capacity = 128) {
    this.#buffer = Buffer.allocUnsafe(Math.max(capacity, 16));
    this.#buffer[4] = type.charCodeAt(0) & 0xff;
  }

  #reserve(bytes: number): void {
    if (this.#pos + bytes <= this.#buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#pos + bytes));
    this.#buffer.copy(grown, 0, 0, this.#pos);
    this.#buffer = grown;
  }

  u8(value: number): this {
    this.#reserve(1);
    this.#buffer[this.#pos++] = value & 0xff;
    return this;
  }

  u32(value: number): this {
    this.#reserve(4);
    this.#buffer.writeUInt32BE(value >>> 0, this.#pos);
    this.#pos += 4;
    return this;
  }

  i32(value: number): this {
    this.#reserve(4);
    this.#buffer.writeInt32BE(value, this.#pos);
    this.#pos += 4;
    return this;
  }

  str(value: string | null | undefined): this {
    if (value === null || value === undefined) return this.u32(NULL_LENGTH);
    // At most 3 bytes of UTF-8 per UTF-16 unit: written in place, its length put before it afterwards.
    this.#reserve(4 + (value.length > 4096 ? Buffer.byteLength(value, "utf8") : value.length * 3));
    const written = this.#buffer.write(value, this.#pos + 4, "utf8");
    this.#buffer.writeUInt32BE(written, this.#pos);
    this.#pos += 4 + written;
    return this;
  }

  toBuffer(): Buffer {
    this.#buffer.writeUInt32BE(this.#pos - 4, 0);
    return this.#buffer.subarray(0, this.#pos);
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

/**
 * Splits a byte stream into frames. A frame that spans several reads is joined once all of it has come (one
 * copy, however many reads a large result takes).
 */
export class FrameStream {
  #buffer: Buffer = Buffer.alloc(0);
  /** Reads after #buffer, not joined yet, and how many bytes they hold. */
  #more: Buffer[] = [];
  #moreLength = 0;
  /** The bytes the frame at the start of #buffer needs in all (0: not known yet). */
  #needed = 0;

  push(chunk: Buffer): FrameReader[] {
    if (this.#buffer.length === 0) this.#buffer = chunk;
    else {
      this.#more.push(chunk);
      this.#moreLength += chunk.length;
      if (this.#buffer.length + this.#moreLength < Math.max(this.#needed, 5)) return [];
      this.#buffer = Buffer.concat([this.#buffer, ...this.#more], this.#buffer.length + this.#moreLength);
      this.#more = [];
      this.#moreLength = 0;
    }
    const buffer = this.#buffer;
    const frames: FrameReader[] = [];
    let pos = 0;
    this.#needed = 0;
    while (buffer.length - pos >= 5) {
      const length = buffer.readUInt32BE(pos);
      if (buffer.length - pos - 4 < length) {
        this.#needed = 4 + length;
        break;
      }
      const type = String.fromCharCode(buffer[pos + 4]!);
      frames.push(new FrameReader(type, buffer.subarray(pos + 5, pos + 4 + length)));
      pos += 4 + length;
    }
    this.#buffer = pos === buffer.length ? EMPTY : buffer.subarray(pos);
    return frames;
  }
}

const EMPTY = Buffer.alloc(0);

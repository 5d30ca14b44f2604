// Control-channel line framing (src/ftp/lines.ts): OpenBSD's 500-byte lines, "\n" terminated, no NUL.
import { describe, expect, it } from 'vitest';
import { LineSplitter, MAX_LINE_BYTES, type LineEvent } from '../../src/ftp/lines.js';

type Seen = string | { error: 'too-long' | 'nul' };

/** Events as latin1 strings (byte for byte) or the error. */
function seen(events: LineEvent[]): Seen[] {
  return events.map((e) => (e.kind === 'line' ? e.line.toString('latin1') : { error: e.error }));
}

/** Feed `chunks` one push at a time and collect everything returned. */
function feed(chunks: string[], splitter = new LineSplitter()): Seen[] {
  return chunks.flatMap((c) => seen(splitter.push(Buffer.from(c, 'latin1'))));
}

const bytes = (s: string): string[] => [...s];
const x = (n: number): string => 'x'.repeat(n);

describe('LineSplitter: lines', () => {
  it.each<[string, string[], Seen[]]>([
    ['CRLF kept', ['USER ftp\r\n'], ['USER ftp\r\n']],
    ['bare LF line', ['NOOP\n'], ['NOOP\n']],
    ['bare CR inside a line kept', ['A\rB\r\n'], ['A\rB\r\n']],
    ['a line of only "\\n"', ['\n'], ['\n']],
    ['a line of only "\\r\\n"', ['\r\n'], ['\r\n']],
    ['several lines in one chunk', ['A\r\nB\nC\r\n'], ['A\r\n', 'B\n', 'C\r\n']],
    ['no line ending yet', ['USER ftp'], []],
    ['a bare CR does not end a line', ['USER ftp\r'], []],
    ['line finished by a later chunk', ['US', 'ER ftp\r', '\n'], ['USER ftp\r\n']],
    ['CR and LF in different chunks', ['abc\r', '\ndef\r\n'], ['abc\r\n', 'def\r\n']],
    ['whole line then a partial one', ['A\r\nB', '\r\n'], ['A\r\n', 'B\r\n']],
    ['empty chunks change nothing', ['', 'A', '', '\n', ''], ['A\n']],
    ['byte by byte', bytes('USER ftp\r\nPASS x\r\n'), ['USER ftp\r\n', 'PASS x\r\n']],
    ['telnet IAC bytes pass through', ['\xff\xf4\xff\xf2ABOR\r\n'], ['\xff\xf4\xff\xf2ABOR\r\n']],
    ['high bytes kept', ['CWD \xe9t\xe9\r\n'], ['CWD \xe9t\xe9\r\n']],
  ])('%s', (_name, chunks, expected) => {
    expect(feed(chunks)).toEqual(expected);
  });

  it('returns each line from the push that completes it', () => {
    const s = new LineSplitter();
    expect(seen(s.push(Buffer.from('USER')))).toEqual([]);
    expect(s.buffered).toBe(4);
    expect(seen(s.push(Buffer.from(' ftp\r\nPA')))).toEqual(['USER ftp\r\n']);
    expect(s.buffered).toBe(2);
    expect(seen(s.push(Buffer.from('SS x\r\n')))).toEqual(['PASS x\r\n']);
    expect(s.buffered).toBe(0);
  });

  it.each([1, 2, 3, 5, 7, 13])('the same lines whatever the chunk size (%d)', (size) => {
    const text = 'USER anonymous\r\nPASS a@b\r\nPASV\nPORT 1,2,3,4,5,6\r\nQUIT\r\n';
    const chunks: string[] = [];
    for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
    expect(feed(chunks)).toEqual(['USER anonymous\r\n', 'PASS a@b\r\n', 'PASV\n', 'PORT 1,2,3,4,5,6\r\n', 'QUIT\r\n']);
  });

  it('keeps the bytes: a line is a copy, not a view of the chunk', () => {
    const chunk = Buffer.from('NOOP\r\n');
    const [event] = new LineSplitter().push(chunk);
    chunk.fill(0x41);
    expect(event).toEqual({ kind: 'line', line: Buffer.from('NOOP\r\n') });
  });
});

describe('LineSplitter: the 500-byte limit', () => {
  it('MAX_LINE_BYTES is 500', () => {
    expect(MAX_LINE_BYTES).toBe(500);
  });

  it.each<[string, string[], Seen[]]>([
    ['500 bytes including "\\n"', [x(499) + '\n'], [x(499) + '\n']],
    ['500 bytes including "\\r\\n"', [x(498) + '\r\n'], [x(498) + '\r\n']],
    ['500 bytes in two chunks', [x(499), '\n'], [x(499) + '\n']],
    ['500 bytes in uneven chunks', [x(100), x(300), x(99), '\n'], [x(499) + '\n']],
    ['499 bytes without "\\n" wait for more', [x(499)], []],
    ['500 bytes without "\\n"', [x(500)], [{ error: 'too-long' }]],
    ['500 bytes without "\\n" in two chunks', [x(250), x(250)], [{ error: 'too-long' }]],
    ['500 bytes without "\\n", then the "\\n"', [x(500), '\n'], [{ error: 'too-long' }]],
    ['501 bytes including "\\n"', [x(500) + '\n'], [{ error: 'too-long' }]],
    ['501 bytes including "\\n" in two chunks', [x(499), 'x\n'], [{ error: 'too-long' }]],
    ['a long run in one chunk', [x(5000)], [{ error: 'too-long' }]],
    ['a good line, then a too-long one', ['A\r\n' + x(500) + '\n'], ['A\r\n', { error: 'too-long' }]],
    ['many full-size lines in one chunk', [(x(499) + '\n').repeat(3)], [x(499) + '\n', x(499) + '\n', x(499) + '\n']],
  ])('%s', (_name, chunks, expected) => {
    expect(feed(chunks)).toEqual(expected);
  });

  it('accepts a 500-byte line fed byte by byte', () => {
    expect(feed(bytes(x(499) + '\n'))).toEqual([x(499) + '\n']);
  });

  it('fails on the 500th byte when fed byte by byte', () => {
    const s = new LineSplitter();
    for (let i = 0; i < 499; i++) expect(s.push(Buffer.from('x'))).toEqual([]);
    expect(seen(s.push(Buffer.from('x')))).toEqual([{ error: 'too-long' }]);
  });

  it.each<[string, string[], Seen[]]>([
    ['10 bytes including "\\n"', ['abcdefghi\n'], ['abcdefghi\n']],
    ['10 bytes without "\\n"', ['abcdefghij'], [{ error: 'too-long' }]],
    ['11 bytes including "\\n"', ['abcdefghij\n'], [{ error: 'too-long' }]],
  ])('a smaller limit (10): %s', (_name, chunks, expected) => {
    expect(feed(chunks, new LineSplitter(10))).toEqual(expected);
  });
});

describe('LineSplitter: NUL bytes', () => {
  it.each<[string, string[], Seen[]]>([
    ['at the start', ['\0USER ftp\r\n'], [{ error: 'nul' }]],
    ['in the middle', ['USER\0ftp\r\n'], [{ error: 'nul' }]],
    ['just before the CR', ['USER ftp\0\r\n'], [{ error: 'nul' }]],
    ['between CR and LF', ['USER ftp\r\0\n'], [{ error: 'nul' }]],
    ['alone', ['\0'], [{ error: 'nul' }]],
    ['in a line that is not finished yet', ['USER\0ftp'], [{ error: 'nul' }]],
    ['in an earlier chunk of the line', ['US\0ER', ' ftp\r\n'], [{ error: 'nul' }]],
    ['in a later chunk of the line', ['USER', ' f\0tp\r\n'], [{ error: 'nul' }]],
    ['in the second line of a chunk', ['NOOP\r\nUSER\0\r\nPASS x\r\n'], ['NOOP\r\n', { error: 'nul' }]],
    ['after a complete line, unfinished', ['NOOP\r\n\0'], ['NOOP\r\n', { error: 'nul' }]],
    ['as the 500th byte', [x(499) + '\0'], [{ error: 'nul' }]],
    ['after 500 bytes without "\\n" (the buffer is full first)', [x(500) + '\0'], [{ error: 'too-long' }]],
    // The chunk's first NUL is looked for once: it must still be found in whichever line holds it.
    ['600 bytes into a chunk, after good lines', [(x(298) + '\r\n').repeat(2) + 'B\0\r\n'], [x(298) + '\r\n', x(298) + '\r\n', { error: 'nul' }]],
    ['in a partial line after good lines', ['A\r\nB\r\nC\0'], ['A\r\n', 'B\r\n', { error: 'nul' }]],
    ['in a line completed across chunks, after a good one', ['A\r\nB', 'C\0\r\n'], ['A\r\n', { error: 'nul' }]],
    ['a second NUL later in the chunk changes nothing', ['A\0\r\nB\0\r\n'], [{ error: 'nul' }]],
  ])('%s', (_name, chunks, expected) => {
    expect(feed(chunks)).toEqual(expected);
  });
});

describe('LineSplitter: after an error', () => {
  it.each<[string, string]>([
    ['too-long', x(500)],
    ['nul', 'A\0'],
  ])('returns nothing more after %s', (_name, bad) => {
    const s = new LineSplitter();
    expect(s.push(Buffer.from(bad, 'latin1'))).toHaveLength(1);
    expect(s.buffered).toBe(0);
    expect(s.push(Buffer.from('NOOP\r\n'))).toEqual([]);
    expect(s.push(Buffer.from('\n'))).toEqual([]);
    expect(s.push(Buffer.from(x(600)))).toEqual([]);
    expect(s.buffered).toBe(0);
  });

  it('stops at the first error in a chunk: later lines are not returned', () => {
    expect(feed(['A\r\nB\0\r\nC\r\n', 'D\r\n'])).toEqual(['A\r\n', { error: 'nul' }]);
  });
});

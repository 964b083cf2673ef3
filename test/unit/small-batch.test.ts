import { describe, expect, it } from 'vitest';

import { parseCopyText } from '../../src/server/small-batch.js';

const parse = (text: string | Buffer, columns: number) => parseCopyText(Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8'), columns);

describe('parseCopyText', () => {
  it('splits lines and fields, reads \\N as null and an empty field as the empty string', () => {
    expect(parse('1\ta\n2\t\\N\n3\t\n', 2)).toEqual([
      ['1', '2', '3'],
      ['a', null, ''],
    ]);
    // The last line may lack its newline.
    expect(parse('1\ta\n2\tb', 2)).toEqual([
      ['1', '2'],
      ['a', 'b'],
    ]);
  });

  it("undoes COPY text's escapes: named, octal, hex, and any other character standing for itself", () => {
    expect(parse('\\t\\n\\r\\b\\f\\v\\\\\\.\\N\\q\n', 1)).toEqual([['\t\n\r\b\f\v\\.Nq']]);
    // Octal and hex bytes make UTF-8 sequences: é is C3 A9.
    expect(parse('\\303\\251\\xc3\\xA9\\101\\x41\\x\\8\n', 1)).toEqual([['ééAAx8']]);
    expect(parse('ü€😀\n', 1)).toEqual([['ü€😀']]);
    // \N inside a field is an escaped N, not null.
    expect(parse('a\\Nb\t\\N\n', 2)).toEqual([['aNb'], [null]]);
  });

  it('leaves to COPY what is not the plain case', () => {
    expect(parse('1\ta\r\n', 2)).toBeNull(); // carriage returns
    expect(parse('1\ta\tb\n', 2)).toBeNull(); // too many fields
    expect(parse('1\n', 2)).toBeNull(); // too few
    expect(parse('1\ta\\\n', 2)).toBeNull(); // a backslash ending a line (an escaped newline)
    expect(parse('1\\\ta\n', 2)).toBeNull(); // an escaped delimiter
    expect(parse('1\t\\000\n', 2)).toBeNull(); // NUL
    expect(parse(Buffer.from([0x31, 0x09, 0xc3, 0x28, 0x0a]), 2)).toBeNull(); // invalid UTF-8
    expect(parse('1\t\\303\n', 2)).toBeNull(); // an escape making invalid UTF-8
  });
});

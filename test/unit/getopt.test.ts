// BSD getopt(3) and strtonum(3) (src/getopt.ts).
import { describe, expect, it } from 'vitest';
import { getopt, type GetoptResult, strtonum } from '../../src/getopt.js';

const OPTSTRING = '6Aa:b:D:dm:P:p:q:R:rT:t:v';
type Opt = GetoptResult['options'][number];
const o = (opt: string, arg?: string): Opt => (arg === undefined ? { opt } : { opt, arg });

describe('getopt: accepted command lines', () => {
  it.each<[string[], Opt[], string[]]>([
    [[], [], []],
    [['-d'], [o('d')], []],
    [['-6Adrv'], [o('6'), o('A'), o('d'), o('r'), o('v')], []],
    [['-D7'], [o('D', '7')], []],
    [['-D', '7'], [o('D', '7')], []],
    [['-dD7'], [o('d'), o('D', '7')], []],
    [['-dD', '7'], [o('d'), o('D', '7')], []],
    [['-Dv'], [o('D', 'v')], []],
    [['-D', '-d'], [o('D', '-d')], []],
    [['-D', '--'], [o('D', '--')], []],
    [['-D', ''], [o('D', '')], []],
    [['-D', ' 7'], [o('D', ' 7')], []],
    [['-v', '-v'], [o('v'), o('v')], []],
    [['-vv'], [o('v'), o('v')], []],
    [['-a', '10.0.0.1', '-b10.0.0.2'], [o('a', '10.0.0.1'), o('b', '10.0.0.2')], []],
    [['-R', 'ftp.example.org', '-P', 'ftp'], [o('R', 'ftp.example.org'), o('P', 'ftp')], []],
    [['--'], [], []],
    [['--', '-d'], [], ['-d']],
    [['-d', '--', '-v'], [o('d')], ['-v']],
    [['-d', '--', '--'], [o('d')], ['--']],
    [['x'], [], ['x']],
    [['-d', 'x', '-v'], [o('d')], ['x', '-v']],
    [['-'], [], ['-']],
    [['-', '-d'], [], ['-', '-d']],
    [['-d', '-'], [o('d')], ['-']],
    [[''], [], ['']],
  ])('%j', (argv, options, rest) => {
    expect(getopt(argv, OPTSTRING)).toEqual({ options, rest });
  });
});

describe('getopt: errors', () => {
  it.each<[string[], Opt[], string]>([
    [['-x'], [], 'unknown option -- x'],
    [['-N'], [], 'unknown option -- N'],
    [['-dx'], [o('d')], 'unknown option -- x'],
    [['-6x6'], [o('6')], 'unknown option -- x'],
    [['-d', '-x', '-v'], [o('d')], 'unknown option -- x'],
    [['-:'], [], 'unknown option -- :'],
    [['--x'], [], 'unknown option -- -'],
    [['-D'], [], 'option requires an argument -- D'],
    [['-dD'], [o('d')], 'option requires an argument -- D'],
    [['-v', '-t'], [o('v')], 'option requires an argument -- t'],
  ])('%j -> %s', (argv, options, error) => {
    expect(getopt(argv, OPTSTRING)).toEqual({ options, rest: [], error });
  });
});

describe('strtonum', () => {
  it.each<[string, number, number, number]>([
    ['0', 0, 7, 0],
    ['7', 0, 7, 7],
    ['5', 0, 7, 5],
    [' 5', 0, 7, 5],
    ['\t\n\v\f\r 5', 0, 7, 5],
    ['+5', 0, 7, 5],
    ['-0', 0, 7, 0],
    ['007', 0, 7, 7],
    ['1', 1, 500, 1],
    ['500', 1, 500, 500],
    ['86400', 0, 86400, 86400],
    ['-5', -10, 10, -5],
    ['00000000000000000000000000000001', 0, 7, 1],
  ])('%j in [%d, %d] -> %d', (text, min, max, value) => {
    expect(strtonum(text, min, max)).toEqual({ value });
  });

  it.each<[string, number, number, string]>([
    ['', 0, 7, 'invalid'],
    [' ', 0, 7, 'invalid'],
    ['abc', 0, 7, 'invalid'],
    ['5x', 0, 7, 'invalid'],
    ['x5', 0, 7, 'invalid'],
    ['0x10', 0, 100, 'invalid'],
    ['5 ', 0, 7, 'invalid'],
    ['5\n', 0, 7, 'invalid'],
    ['+', 0, 7, 'invalid'],
    ['-', 0, 7, 'invalid'],
    ['+-5', 0, 7, 'invalid'],
    ['--5', 0, 7, 'invalid'],
    ['1e3', 0, 100000, 'invalid'],
    ['5.0', 0, 7, 'invalid'],
    ['5,0', 0, 7, 'invalid'],
    ['\u00a05', 0, 7, 'invalid'],
    ['\u30005', 0, 7, 'invalid'],
    ['\uff15', 0, 7, 'invalid'],
    ['8', 0, 7, 'too large'],
    ['-1', 0, 7, 'too small'],
    ['0', 1, 500, 'too small'],
    ['501', 1, 500, 'too large'],
    ['86401', 0, 86400, 'too large'],
    ['9223372036854775807', 0, 7, 'too large'],
    ['9223372036854775808', 0, 7, 'too large'],
    ['99999999999999999999999999', 0, 7, 'too large'],
    ['-99999999999999999999999999', 0, 7, 'too small'],
  ])('%j in [%d, %d] -> %s', (text, min, max, error) => {
    expect(strtonum(text, min, max)).toEqual({ error });
  });
});

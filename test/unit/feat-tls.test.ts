// FEAT under the TLS modes (issue 12): who lists AUTH, PBSZ, PROT and CCC. keepFeature's third argument
// (the server answers AUTH: tls_client passthrough) and FeatRewriter's `tls` (none: nobody, server: the
// server's lines stay, proxy: the proxy lists its own in place of the server's), with the policy's feat
// rules around them.
import { describe, expect, it } from 'vitest';
import { FeatRewriter, type TlsFeatures } from '../../src/ftp/reply-gate.js';
import { keepFeature } from '../../src/policy/feat.js';
import { defaultPolicy, parsePolicy, type Policy, PolicyError } from '../../src/policy/parse.js';
import { issues, policy } from '../helpers/policy-text.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** A whole FEAT reply through a rewriter: what the client gets, line by line. */
function rewrite(p: Policy, tls: TlsFeatures, lines: string[]): string[] {
  const f = new FeatRewriter(p, tls);
  if (lines.length === 1) {
    const one = f.oneLine(b(lines[0]!));
    return [String(one ?? lines[0])];
  }
  const out: string[] = [lines[0]!];
  lines.slice(1).forEach((l, i) => out.push(...f.line(b(l), l, i === lines.length - 2).map(String)));
  return out;
}

const SERVER_FEAT = ['211-Features:\r\n', ' AUTH TLS\r\n', ' AUTH SSL\r\n', ' PBSZ\r\n', ' PROT\r\n', ' CCC\r\n', ' MDTM\r\n', ' UTF8\r\n', '211 End\r\n'];
const PROXY_LINES = ' AUTH TLS\r\n PBSZ\r\n PROT\r\n CCC\r\n';

describe('keepFeature(policy, feature, serverTls)', () => {
  it.each<[string, boolean, boolean]>([
    // the TLS features: dropped unless the server answers AUTH itself
    ['AUTH TLS', false, false],
    ['AUTH SSL', false, false],
    ['auth tls', false, false],
    ['AUTH', false, false],
    ['PBSZ', false, false],
    ['PROT', false, false],
    ['CCC', false, false],
    ['AUTH TLS', true, true],
    ['AUTH SSL', true, true],
    ['PBSZ', true, true],
    ['PROT', true, true],
    ['CCC', true, true],
    // a prefix is not the feature: "PROTX" and "AUTHORITY" are others
    ['PROTX', false, true],
    ['AUTHORITY', false, true],
    ['CCCX', false, true],
    // the others do not care
    ['MDTM', false, true],
    ['MDTM', true, true],
    ['MLST type*;size*;', false, true],
  ])('%j, serverTls %s -> %s', (feature, serverTls, want) => {
    expect(keepFeature(defaultPolicy(), feature, serverTls)).toBe(want);
  });

  it('the default is the proxy\'s (serverTls false)', () => {
    expect(keepFeature(defaultPolicy(), 'AUTH TLS')).toBe(false);
  });

  it('tls_client decides the TLS lines; "*" does not reach them, a rule naming one may drop it; the other rules still apply', () => {
    const p = policy('feat "AUTH SSL" drop\nfeat MDTM drop\nfeat * drop\n');
    expect(keepFeature(p, 'AUTH SSL', true)).toBe(false);
    expect(keepFeature(p, 'AUTH TLS', true)).toBe(true);
    expect(keepFeature(p, 'PBSZ', true)).toBe(true);
    expect(keepFeature(p, 'MDTM', true)).toBe(false);
    expect(keepFeature(p, 'SIZE', true)).toBe(false);
    expect(keepFeature(p, 'AUTH TLS', false)).toBe(false);
  });
});

describe('FeatRewriter: a whole FEAT reply per tls_client', () => {
  it('proxy (accept/require): the server\'s AUTH/PBSZ/PROT/CCC go, the proxy\'s come before the end line', () => {
    expect(rewrite(defaultPolicy(), 'proxy', SERVER_FEAT)).toEqual(['211-Features:\r\n', ' MDTM\r\n', ' UTF8\r\n', PROXY_LINES, '211 End\r\n']);
  });

  it('proxy: a server that lists none of them gets them too (one-sided STARTTLS, as Zorp does)', () => {
    expect(rewrite(defaultPolicy(), 'proxy', ['211-Features:\r\n', ' MDTM\r\n', '211 End\r\n'])).toEqual(['211-Features:\r\n', ' MDTM\r\n', PROXY_LINES, '211 End\r\n']);
  });

  it('proxy: a one-line 211 becomes a multi-line one', () => {
    expect(rewrite(defaultPolicy(), 'proxy', ['211 No features\r\n'])).toEqual([`211-No features\r\n${PROXY_LINES}211 End\r\n`]);
  });

  it('proxy: the policy\'s inserts come first, then the proxy\'s', () => {
    const p = policy('feat XCRC insert\n');
    expect(rewrite(p, 'proxy', ['211-Features:\r\n', ' MDTM\r\n', '211 End\r\n'])).toEqual(['211-Features:\r\n', ' MDTM\r\n', ` XCRC\r\n${PROXY_LINES}`, '211 End\r\n']);
    expect(rewrite(p, 'proxy', ['211 none\r\n'])).toEqual([`211-none\r\n XCRC\r\n${PROXY_LINES}211 End\r\n`]);
  });

  it('proxy: a policy that drops every other feature still lists the proxy\'s (tls_client decides them)', () => {
    expect(rewrite(policy('feat * drop\n'), 'proxy', SERVER_FEAT)).toEqual(['211-Features:\r\n', PROXY_LINES, '211 End\r\n']);
  });

  it('server (passthrough): every line as the server sent it, nothing added', () => {
    expect(rewrite(defaultPolicy(), 'server', SERVER_FEAT)).toEqual(SERVER_FEAT);
    expect(rewrite(defaultPolicy(), 'server', ['211 No features\r\n'])).toEqual(['211 No features\r\n']);
  });

  it('none: the TLS lines go, nothing added', () => {
    expect(rewrite(defaultPolicy(), 'none', SERVER_FEAT)).toEqual(['211-Features:\r\n', ' MDTM\r\n', ' UTF8\r\n', '211 End\r\n']);
    expect(rewrite(defaultPolicy(), 'none', ['211 No features\r\n'])).toEqual(['211 No features\r\n']);
  });

  it('the rewriter\'s default is none', () => {
    const f = new FeatRewriter(defaultPolicy());
    expect(f.line(b(' AUTH TLS\r\n'), ' AUTH TLS\r\n', false)).toEqual([]);
    expect(f.oneLine(b('211 x\r\n'))).toBeNull();
  });

  // Helper F's finding: with passthrough, "feat * drop" also dropped the server's AUTH TLS/PBSZ/PROT, so
  // clients never tried TLS and pass-through silently never happened.
  it('server (passthrough) with "feat * drop": the server\'s AUTH/PBSZ/PROT stay, as tls_client decides them', () => {
    expect(rewrite(policy('feat * drop\n'), 'server', ['211-Features:\r\n', ' AUTH TLS\r\n', ' PBSZ\r\n', ' PROT\r\n', ' MDTM\r\n', '211 End\r\n'])).toEqual([
      '211-Features:\r\n',
      ' AUTH TLS\r\n',
      ' PBSZ\r\n',
      ' PROT\r\n',
      '211 End\r\n',
    ]);
  });
});

describe('the policy cannot accept or insert what tls_client decides', () => {
  it.each(['feat AUTH accept', 'feat "AUTH TLS" insert', 'feat PBSZ insert', 'feat PROT accept', 'feat "PROT P" insert'])('%j is refused', (line) => {
    const got = issues(line);
    expect(got).toHaveLength(1);
    expect(got[0]).toContain('follow tls_client (dropped with none, listed by the proxy with accept or require, the server\'s with passthrough)');
  });

  // Helper F's finding (after 1adc4e0): a drop rule naming AUTH, PBSZ or PROT still parses, but can no
  // longer do anything (tls_client decides those lines: none drops them anyway, accept/require list the
  // proxy's, passthrough keeps the server's), so a line of the policy is silently ignored. Either the
  // parser refuses it, like accept and insert, or it takes effect. Got: parsed, and AUTH TLS kept.
  it.each(['feat AUTH drop', 'feat "AUTH SSL" drop', 'feat PBSZ drop'])('%j is refused, or does what it says', (line) => {
    const p = parsePolicy(line, 'test.policy');
    if (p instanceof PolicyError) return;
    const feature = line.split(' ').slice(1, -1).join(' ').replaceAll('"', '');
    expect(keepFeature(p, feature, true)).toBe(false);
  });
});

// `ftp-proxy status` parsing: real kernel listings (test/fixtures/status, captured from nft and
// iptables-save in a scratch namespace after loading what --print-rules prints) into sessions and pinholes.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { NftJson } from '../../src/firewall/nftables.js';
import { Instance } from '../../src/firewall/instance.js';
import { formatStatus, instancePid, iptablesStatus, nftStatus, readStatus, unixSocketInode } from '../../src/status.js';
import { parseProcTcp, procAddress } from '../../src/net/sockets.js';

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/status/${name}`, import.meta.url), 'utf8');
const NFT = JSON.parse(fixture('nft-list.json')) as NftJson;
const SAVE = fixture('iptables-save.txt');

describe('nftStatus', () => {
  const st = nftStatus(NFT, (id) => id === '4a3b2c1d');

  it('groups the elements by owner and joins dnat and snat maps into pinholes', () => {
    expect(st.present).toBe(true);
    expect(st.instances).toEqual([{ id: '4a3b2c1d', pid: null, running: true, sockets: [] }]);
    expect(st.sessions.map((s) => `${s.instance}.${s.session}`)).toEqual(['4a3b2c1d.1', '4a3b2c1d.2']);
    const [v4, v6] = st.sessions;
    expect(v4!.pinholes).toEqual(
      expect.arrayContaining([
        // passive; its once-element is gone: the connection came
        expect.objectContaining({ from: '192.0.2.10', to: '198.51.100.20', toPort: 50001, rdrTo: '198.51.100.20', rdrPort: 40001, natFrom: '203.0.113.1', state: 'used' }),
        // active with -r: source port 20, from the snatport map
        expect.objectContaining({ from: '198.51.100.20', to: '203.0.113.1', toPort: 50002, rdrTo: '192.0.2.10', rdrPort: 40002, natFrom: '198.51.100.20', natPort: 20, state: 'waiting' }),
      ]),
    );
    expect(v4!.pinholes).toHaveLength(2);
    expect(v6!.pinholes).toHaveLength(2);
    expect(v6!.pinholes[0]).toMatchObject({ from: '2001:db8:1::10', state: 'waiting' });
    for (const p of [...v4!.pinholes, ...v6!.pinholes]) expect(p.expires).toBeGreaterThan(0);
  });

  it('a dnat element without an snat element is a data_mode pinhole to the proxy itself', () => {
    const noSnat = { nftables: NFT.nftables!.filter((i) => !/^from/.test(i.map?.name ?? '')) };
    const p = nftStatus(noSnat, () => true).sessions[0]!.pinholes.find((x) => x.toPort === 50001)!;
    expect(p).toMatchObject({ from: '192.0.2.10', natFrom: '192.0.2.10', local: true });
  });

  it('an instance with -v/-T/-q keeps its gate in @oncevN: still waiting', () => {
    const renamed = JSON.parse(JSON.stringify(NFT).replace(/"name":"once4"/g, '"name":"oncev4"')) as NftJson;
    expect(JSON.stringify(renamed)).toContain('"oncev4"');
    const p = nftStatus(renamed, () => true).sessions[0]!.pinholes.find((x) => x.toPort === 50002)!;
    expect(p.state).toBe('waiting');
  });

  it('no table: not present, nothing listed', () => {
    expect(nftStatus(null, () => true)).toEqual({ backend: 'nftables', present: false, instances: [], sessions: [] });
  });

  it('an owner whose process is gone shows as not running', () => {
    expect(nftStatus(NFT, () => false).instances).toEqual([{ id: '4a3b2c1d', pid: null, running: false, sockets: [] }]);
  });
});

describe('iptablesStatus', () => {
  const now = new Date(Date.parse('2026-11-21T19:57:49Z'));

  it('reads DNAT and SNAT rules of the session chains; xt_recent says used or waiting; --datestop the expiry', () => {
    const st = iptablesStatus([SAVE, ''], (list) => list.endsWith('-1'), now, () => true);
    expect(st.present).toBe(true);
    expect(st.instances).toEqual([{ id: '4a3b2c1d', pid: null, running: true, sockets: [] }]);
    expect(st.sessions).toEqual([
      {
        instance: '4a3b2c1d',
        session: 1,
        pinholes: [
          { from: '192.0.2.10', to: '198.51.100.20', toPort: 50001, rdrTo: '198.51.100.20', rdrPort: 40001, natFrom: '203.0.113.1', state: 'used', expires: 30 },
          { from: '198.51.100.20', to: '203.0.113.1', toPort: 50002, rdrTo: '192.0.2.10', rdrPort: 40002, natFrom: '198.51.100.20', natPort: 20, state: 'waiting', expires: 30 },
        ],
      },
    ]);
  });

  it('without /proc/net/xt_recent the state is unknown', () => {
    const st = iptablesStatus([SAVE], () => null, now, () => true);
    expect(st.sessions[0]!.pinholes.map((p) => p.state)).toEqual(['unknown', 'unknown']);
  });

  it('IPv6 rules: addresses in brackets are read', () => {
    const v6 = [
      ':FTPPROXY-PRE - [0:0]',
      ':FTPP-00000007-3-DA - [0:0]',
      '-A FTPP-00000007-3-DA -s 2001:db8:1::10/128 -d 2001:db8:3::20/128 -p tcp -m tcp --dport 50001 --tcp-flags SYN,ACK SYN -m time --datestop 2026-11-21T19:58:19 -m recent ! --rcheck --name ftpp-00000007.3-9 --rsource -j DNAT --to-destination [2001:db8:3::20]:40001',
      '-A FTPP-00000007-3-SA -s 2001:db8:1::10/128 -d 2001:db8:3::20/128 -p tcp -m tcp --dport 40001 -j SNAT --to-source 2001:db8:2::1',
      '',
    ].join('\n');
    const st = iptablesStatus(['', v6], () => false, now, () => false);
    expect(st.sessions[0]!.pinholes[0]).toEqual({
      from: '2001:db8:1::10',
      to: '2001:db8:3::20',
      toPort: 50001,
      rdrTo: '2001:db8:3::20',
      rdrPort: 40001,
      natFrom: '2001:db8:2::1',
      state: 'waiting',
      expires: 30,
    });
    expect(st.instances).toEqual([{ id: '00000007', pid: null, running: false, sockets: [] }]);
  });

  it('a DNAT without SNAT is a data_mode pinhole to the proxy itself: its source is kept', () => {
    const local = [
      ':FTPPROXY-PRE - [0:0]',
      '-A FTPP-00000009-1-DA -s 192.0.2.10/32 -d 198.51.100.20/32 -p tcp -m tcp --dport 50001 --tcp-flags SYN,ACK SYN -m time --datestop 2026-11-21T19:58:19 -m recent ! --rcheck --name ftpp-00000009.1-1 --rsource -j DNAT --to-destination 203.0.113.1:41000',
      '',
    ].join('\n');
    const st = iptablesStatus([local], () => false, now, () => true);
    expect(st.sessions[0]!.pinholes[0]).toMatchObject({ from: '192.0.2.10', rdrTo: '203.0.113.1', rdrPort: 41000, natFrom: '192.0.2.10', local: true });
    expect(formatStatus([st])).toMatch(/^ {2}192\.0\.2\.10 -> 198\.51\.100\.20:50001 => 203\.0\.113\.1:41000 from 192\.0\.2\.10 \(to the proxy itself, source kept: data_mode\) {2}waiting/m);
  });

  it('no chains at all: not present', () => {
    expect(iptablesStatus(['*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n'], () => null, now, () => true).present).toBe(false);
  });
});

describe('formatStatus', () => {
  it('one line per instance, session and pinhole, like pfctl -sr', () => {
    const st = nftStatus(NFT, () => true);
    st.instances[0]!.pid = 4242;
    st.instances[0]!.sockets = [
      { local: '127.0.0.1', localPort: 8021, remote: '0.0.0.0', remotePort: 0, state: 'listen' },
      { local: '127.0.0.1', localPort: 8021, remote: '192.0.2.10', remotePort: 40000, state: 'established' },
      { local: '203.0.113.1', localPort: 33000, remote: '198.51.100.20', remotePort: 21, state: 'established' },
    ];
    const text = formatStatus([st]);
    expect(text).toMatch(/^nftables: table inet ftp-proxy\ninstance 4a3b2c1d \(pid 4242\): running, listening on 127\.0\.0\.1:8021, 2 control-channel TCP connections\n/);
    expect(text).toContain('  tcp 192.0.2.10:40000 <-> 127.0.0.1:8021\n');
    expect(text).toContain('session 4a3b2c1d.1: 2 pinholes\n');
    expect(text).toMatch(/^ {2}192\.0\.2\.10 -> 198\.51\.100\.20:50001 => 198\.51\.100\.20:40001 from 203\.0\.113\.1 {2}used \(its one connection came\), expires in \d+s$/m);
    expect(text).toMatch(/^ {2}198\.51\.100\.20 -> 203\.0\.113\.1:50002 => 192\.0\.2\.10:40002 from 198\.51\.100\.20:20 {2}waiting for its connection, expires in \d+s$/m);
    expect(text).toMatch(/^ {2}2001:db8:1::10 -> \[2001:db8:3::20\]:50001 => \[2001:db8:3::20\]:40001 from 2001:db8:2::1 {2}waiting/m);
  });

  it('says so when there is nothing, and names a dead instance', () => {
    expect(formatStatus([nftStatus(null, () => true)])).toBe('nftables: no table inet ftp-proxy: no ftp-proxy instance uses nftables\n');
    expect(formatStatus([nftStatus(NFT, () => false)])).toMatch(/^instance 4a3b2c1d: gone \(the next ftp-proxy to start removes its objects\)$/m);
    expect(formatStatus([{ backend: 'pf', present: true, instances: [], sessions: [], text: '' }])).toBe("pf: anchors ftp-proxy/* (pfctl -a 'ftp-proxy/*' -sr)\n  no pinholes\n");
  });
});

describe('range pinholes (tls_client passthrough)', () => {
  // Captured from nft and iptables-nft-save in a scratch namespace: two range pinholes (one of a single
  // port, which nft lists as a bare port) and a passive pinhole whose proxy port lies in the range.
  const NFT_RANGE = JSON.parse(fixture('nft-range.json')) as NftJson;
  const SAVE_RANGE = fixture('iptables-range-save.txt');

  it('nftables: the interval maps read back as pinholes with their range, open for their session, no expiry', () => {
    const st = nftStatus(NFT_RANGE, () => true);
    expect(st.sessions.map((x) => `${x.instance}.${x.session}`)).toEqual(['4a3b2c1d.3', '4a3b2c1d.4', '4a3b2c1d.5']);
    expect(st.sessions[0]!.pinholes).toEqual([
      { from: '192.0.2.10', to: '198.51.100.20', toPort: 50000, toPortHigh: 50100, rdrTo: '198.51.100.20', rdrPort: 50000, natFrom: '203.0.113.1', state: 'open', expires: null },
    ]);
    expect(st.sessions[1]!.pinholes).toEqual([
      { from: '2001:db8:1::10', to: '2001:db8:3::20', toPort: 60000, toPortHigh: 60000, rdrTo: '2001:db8:3::20', rdrPort: 60000, natFrom: '2001:db8:2::1', state: 'open', expires: null },
    ]);
    // the passive pinhole inside the range is its own, not taken for part of the range
    expect(st.sessions[2]!.pinholes).toEqual([expect.objectContaining({ toPort: 50050, rdrPort: 40001, state: 'waiting' })]);
    expect(st.sessions[2]!.pinholes[0]!.toPortHigh).toBeUndefined();
  });

  it('iptables: --dport LOW:HIGH and a DNAT without a port read back as the range, open, no expiry', () => {
    const st = iptablesStatus([SAVE_RANGE], () => null, new Date(), () => true);
    expect(st.sessions).toEqual([
      {
        instance: '4a3b2c1d',
        session: 7,
        pinholes: [{ from: '192.168.1.10', to: '198.51.100.21', toPort: 50000, toPortHigh: 50100, rdrTo: '198.51.100.21', rdrPort: 50000, natFrom: '198.51.100.1', state: 'open', expires: null }],
      },
    ]);
  });

  it('the text shows the range both ways and says it is open while its session lasts', () => {
    const text = formatStatus([nftStatus(NFT_RANGE, () => true), iptablesStatus([SAVE_RANGE], () => null, new Date(), () => true)]);
    expect(text).toMatch(/^ {2}192\.0\.2\.10 -> 198\.51\.100\.20:50000-50100 => 198\.51\.100\.20:50000-50100 from 203\.0\.113\.1 {2}open while its session lasts \(tls_client passthrough: any number of connections\)$/m);
    expect(text).toMatch(/^ {2}2001:db8:1::10 -> \[2001:db8:3::20\]:60000-60000 => \[2001:db8:3::20\]:60000-60000 from 2001:db8:2::1 {2}open while/m);
    expect(text).toMatch(/^ {2}192\.168\.1\.10 -> 198\.51\.100\.21:50000-50100 => 198\.51\.100\.21:50000-50100 from 198\.51\.100\.1 {2}open while/m);
  });
});

describe('readStatus', () => {
  const readers = { nft: async () => NFT, iptablesSave: async () => [SAVE], recent: () => false, alive: async () => true, pidOf: () => 4242, sockets: () => [], pfctl: async () => 'anchor "ftp-proxy/1.2" all {\n}\n' };

  it('auto on Linux reads nftables and iptables both; on OpenBSD pf only', async () => {
    expect((await readStatus('auto', readers, 'linux')).map((s) => s.backend)).toEqual(['nftables', 'iptables']);
    const pf = await readStatus('auto', readers, 'openbsd');
    expect(pf.map((s) => s.backend)).toEqual(['pf']);
    expect(pf[0]!.text).toMatch(/^anchor "ftp-proxy\/1\.2"/);
  });

  it('a named backend that cannot be read is an error; under auto another one answers', async () => {
    const broken = { ...readers, nft: async () => Promise.reject(new Error('Operation not permitted')) };
    await expect(readStatus('nftables', broken, 'linux')).rejects.toThrow(/Operation not permitted/);
    expect((await readStatus('auto', broken, 'linux')).map((s) => s.backend)).toEqual(['iptables']);
    const none = { ...broken, iptablesSave: async () => null };
    await expect(readStatus('auto', none, 'linux')).rejects.toThrow(/cannot read the firewall: nftables: Operation not permitted/);
  });
});

describe('instancePid: the process holding an instance\'s abstract socket', () => {
  it('finds the inode of @ftp-proxy/<id> in /proc/net/unix', () => {
    const text = [
      'Num       RefCount Protocol Flags    Type St Inode Path',
      '0000000000000000: 00000002 00000000 00010000 0001 01 4710 @ftp-proxy/4a3b2c1d0',
      '0000000000000000: 00000002 00000000 00010000 0001 01 4711 @ftp-proxy/4a3b2c1d@@@@@@@@',
      '0000000000000000: 00000002 00000000 00010000 0001 01 4712 /run/other.sock',
      '0000000000000000: 00000003 00000000 00000000 0001 03 4713',
    ].join('\n');
    expect(unixSocketInode(text, '\0ftp-proxy/4a3b2c1d')).toBe('4711');
    expect(unixSocketInode(text, '\0ftp-proxy/0000000a')).toBeNull();
  });

  it('finds this very process by a name it holds', async () => {
    const i = new Instance();
    await i.claim();
    try {
      expect(instancePid(i.id)).toBe(process.pid);
    } finally {
      i.release();
    }
    expect(instancePid(i.id)).toBeNull();
  });
});

describe('/proc/net/tcp', () => {
  it.each([
    ['0100007F', '127.0.0.1'],
    ['0A01A8C0', '192.168.1.10'],
    ['00000000000000000000000001000000', '::1'],
    ['0000000000000000FFFF00000100007F', '127.0.0.1'],
    ['B80D0120000000000000000010000000', '2001:db8::10'],
    ['B80D0120000001000000000010000000', '2001:db8:1::10'],
    ['B80D0120010000000000000010000000', '2001:db8:0:1::10'],
    ['00000000000000000000000000000000', '::'],
  ])('%s is %s', (hex, address) => {
    expect(procAddress(hex)).toBe(address);
  });

  it('reads the rows of the inodes asked for, with their state', () => {
    const text = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1F55 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0',
      '   1: 0100007F:1F55 0A01A8C0:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0 20 4 30 10 -1',
      '   2: 0100007F:1F56 0A01A8C0:9C41 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0 20 4 30 10 -1',
      '   3: 0100007F:1F57 0A01A8C0:9C42 06 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 20 4 30 10 -1',
    ].join('\n');
    expect(parseProcTcp(text, new Set(['1111', '2222', '4444']))).toEqual([
      { local: '127.0.0.1', localPort: 8021, remote: '0.0.0.0', remotePort: 0, state: 'listen' },
      { local: '127.0.0.1', localPort: 8021, remote: '192.168.1.10', remotePort: 40000, state: 'established' },
      { local: '127.0.0.1', localPort: 8023, remote: '192.168.1.10', remotePort: 40002, state: 'other' },
    ]);
  });
});

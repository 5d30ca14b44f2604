#!/usr/bin/env node
// A stand-in for OpenBSD's pfctl(8) on Linux: records every call (arguments and stdin) as one JSON line
// in $FAKE_PFCTL_LOG and answers the few queries the pf backend makes from files in $FAKE_PFCTL_DIR:
//   info      `pfctl -s info`            (default "Status: Enabled ...")
//   rules     `pfctl -s rules`           (default: the anchor line)
//   anchors   `pfctl -a ftp-proxy -s Anchors`
//   fail      a regular expression: calls whose arguments match it exit 1 with "pfctl: ... failed"
import { appendFileSync, existsSync, readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const dir = process.env.FAKE_PFCTL_DIR ?? '.';
const file = (name, fallback) => (existsSync(`${dir}/${name}`) ? readFileSync(`${dir}/${name}`, 'utf8') : fallback);
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  if (process.env.FAKE_PFCTL_LOG) appendFileSync(process.env.FAKE_PFCTL_LOG, JSON.stringify({ args, input }) + '\n');
  const fail = file('fail', '').trim();
  if (fail && new RegExp(fail).test(args.join(' '))) {
    process.stderr.write(`pfctl: DIOCADDRULE: Operation not permitted\n`);
    process.exit(1);
  }
  const joined = args.join(' ');
  if (joined === '-s info') process.stdout.write(file('info', 'Status: Enabled for 0 days 01:02:03           Debug: err\n'));
  else if (joined === '-s rules') process.stdout.write(file('rules', 'anchor "ftp-proxy/*" all\n'));
  else if (joined === '-a ftp-proxy -s Anchors') process.stdout.write(file('anchors', ''));
  process.exit(0);
});

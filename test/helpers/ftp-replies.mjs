// FTP replies off a socket, for the test's own raw clients (ftps-raw.mjs, ftps-driver.mjs): whole
// replies, a multi-line one as one string with its lines joined by "\n".

/**
 * A reply reader over `sock` (or over whatever socket carries the control channel now: detach() and
 * start another on the TLS socket). next() resolves with the next reply, or '' once the socket is gone.
 */
export function replyReader(sock) {
  let buf = '';
  const queue = [];
  const waiters = [];
  const onData = (d) => {
    buf += typeof d === 'string' ? d : d.toString('latin1');
    let nl;
    let cur = [];
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      cur.push(line);
      // the last line of a reply: "ddd " (a multi-line reply goes on with "ddd-")
      if (/^\d{3}( |$)/.test(line)) {
        queue.push(cur.join('\n'));
        cur = [];
      }
    }
    if (cur.length) buf = `${cur.join('\n')}\n${buf}`;
    while (queue.length && waiters.length) waiters.shift()(queue.shift());
  };
  sock.on('data', onData);
  // the other side hung up (vsftpd does after 522): every pending read gets an empty reply
  sock.once('close', () => {
    while (waiters.length) waiters.shift()('');
  });
  sock.on('error', () => undefined);
  return {
    next: () => new Promise((r) => (queue.length ? r(queue.shift()) : sock.destroyed ? r('') : waiters.push(r))),
    detach: () => sock.removeListener('data', onData),
  };
}

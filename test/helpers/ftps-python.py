# Python's ftplib.FTP_TLS as an FTPS client for the TLS lab; one JSON line out.
# usage: ftps-python.py HOST PORT CAFILE VERSION(1.2|1.3|any) REUSE(stock|session) FILE...
#   stock:   ftplib as shipped. Its data connection does NOT offer the control session
#            (FTP_TLS.ntransfercmd calls wrap_socket without session=), so vsftpd answers 522.
#   session: the usual subclass that passes session=self.sock.session, as clients of strict servers do.
import ftplib
import hashlib
import json
import ssl
import sys

host, port, cafile, version, reuse, *files = sys.argv[1:]
ctx = ssl.create_default_context(cafile=cafile)
if version != "any":
    v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = v
    ctx.maximum_version = v


class ReusingFTP_TLS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


out = {"ok": False, "transfers": []}
try:
    cls = ReusingFTP_TLS if reuse == "session" else ftplib.FTP_TLS
    f = cls(context=ctx, timeout=30)
    f.connect(host, int(port))
    f.auth()
    f.login("anonymous", "lab@")
    f.prot_p()
    out["version"] = f.sock.version()
    for name in files:
        h = hashlib.sha256()
        n = [0]

        def take(b):
            h.update(b)
            n[0] += len(b)

        try:
            reply = f.retrbinary("RETR " + name, take)
        except ftplib.all_errors as e:
            reply = "error: " + str(e)
        out["transfers"].append({"file": name, "bytes": n[0], "sha256": h.hexdigest(), "reply": reply})
        if reply.startswith("error"):
            break
    try:
        f.quit()
    except ftplib.all_errors:
        pass
    out["ok"] = True
except Exception as e:  # noqa: BLE001 - the test reads the message
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))

# Python's ftplib.FTP_TLS as a client of the FTPS end-to-end tests and the TLS lab; one JSON line out.
# usage: ftps-client.py '<json options>'
#   host, port, cafile, version ("1.2" | "1.3" | "any"), user, password,
#   mode ("pasv" | "epsv" | "port" | "eprt"), prot ("P" | "C"),
#   reuse: "stock" (the default): as ftplib ships, its data connection does NOT offer the control session
#          (FTP_TLS.ntransfercmd calls wrap_socket without session=), so vsftpd answers 522;
#          "session": the usual subclass that passes session=self.sock.session, as clients of strict servers do,
#   commands (sent after login and PROT, each reply kept in "commands"),
#   files (downloaded in order), tls (false: plain FTP, no AUTH), hold (seconds to wait after login,
#   with a {"ready": true} line first, for a test that looks at the firewall during the session)
# ftplib picks PASV/PORT for IPv4 and EPSV/EPRT for IPv6 by itself; the subclass here asks for the one
# the test names, whatever the family.
import ftplib
import hashlib
import json
import socket
import ssl
import sys
import time

o = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=o.get("cafile"))
version = o.get("version", "any")
if version != "any":
    v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = v
    ctx.maximum_version = v
mode = o.get("mode", "pasv")


class Client(ftplib.FTP_TLS):
    def makepasv(self):
        if mode == "epsv":
            return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        _, port = ftplib.parse227(self.sendcmd("PASV"))
        # as ftplib does by default: the control connection's peer, not the reply's address
        return self.sock.getpeername()[0], port

    def makeport(self):
        host = self.sock.getsockname()[0]
        sock = socket.create_server((host, 0), family=self.af, backlog=1)
        port = sock.getsockname()[1]
        if mode == "eprt":
            self.sendeprt(host, port)
        else:
            self.sendport(host, port)
        sock.settimeout(self.timeout)
        return sock

    def ntransfercmd(self, cmd, rest=None):
        if o.get("reuse", "stock") == "stock":
            return super().ntransfercmd(cmd, rest)
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


out = {"ok": False, "transfers": [], "replies": []}
try:
    f = Client(context=ctx, timeout=30)
    out["replies"].append(f.connect(o["host"], int(o.get("port", 21))))
    f.set_pasv(mode in ("pasv", "epsv"))
    if o.get("tls", True):
        out["replies"].append(f.auth())
        out["version"] = f.sock.version()
        out["cipher"] = f.sock.cipher()[0]
    # secure=False: FTP_TLS.login() would otherwise send AUTH TLS by itself
    out["replies"].append(f.login(o.get("user", "anonymous"), o.get("password", "lab@"), secure=o.get("tls", True)))
    if o.get("tls", True):
        out["replies"].append(f.prot_p() if o.get("prot", "P") == "P" else f.prot_c())
    out["commands"] = []
    for c in o.get("commands", []):
        try:
            out["commands"].append(c + " -> " + f.sendcmd(c))
        except ftplib.all_errors as e:
            out["commands"].append(c + " -> " + str(e))
    if o.get("hold"):
        print(json.dumps({"ready": True}), flush=True)
        time.sleep(float(o["hold"]))
    for name in o.get("files", []):
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
        out["replies"].append(f.quit())
    except ftplib.all_errors:
        pass
    out["ok"] = all(t["reply"].startswith("226") for t in out["transfers"])
except Exception as e:  # noqa: BLE001 - the test reads the message
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out), flush=True)

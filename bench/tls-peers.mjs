// The FTPS part of npm run bench: what it runs besides ftp-proxy, as text and argument lists (pure; the
// bench writes the files and starts the processes, each as its own child in a lab namespace).
//
//   - the FTPS server: a second proftpd with mod_tls (proftpd-mod-crypto) in the server namespace, the
//     lab's user lab/lab and its data directory, TLS required on the control connection only (so that
//     PROT C after CCC is allowed; PROT P when the client asks), session reuse required on data
//     connections (mod_tls's default, as vsftpd's);
//   - the relaying FTPS peer: proftpd's mod_proxy (proftpd-mod-proxy) as a reverse proxy in the firewall
//     namespace, TLS to the client through mod_tls, TLS to the server (ProxyTLSEngine on), the data
//     relayed in userland on both legs, with its own configuration, pid, scoreboard and tables;
//   - the lab's certificates: one CA, one certificate for every name a client dials (openssl, at set-up).
// Nothing here is installed or enabled as a service.

/** openssl commands (argument lists) that make ca.pem/ca.key and srv.pem/srv.key in dir for the IP SANs. */
export function pkiCommands(dir, ips) {
  const ext = `${dir}/srv.ext`;
  return {
    ext: { file: ext, text: `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n` },
    commands: [
      ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/ca.key`, '-out', `${dir}/ca.pem`, '-days', '2', '-subj', '/CN=ftp-proxy bench CA',
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      ['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/srv.key`, '-out', `${dir}/srv.csr`, '-subj', `/CN=${ips[0]}`],
      ['openssl', 'x509', '-req', '-in', `${dir}/srv.csr`, '-CA', `${dir}/ca.pem`, '-CAkey', `${dir}/ca.key`, '-CAcreateserial', '-out', `${dir}/srv.pem`, '-days', '2', '-extfile', ext],
    ],
  };
}

/** proftpd + mod_tls, the FTPS server both proxies relay to (and the client reaches directly). */
export function ftpsServerConf({ dir, addresses, passwd, cert, key, pasv }) {
  return [
    'ServerName "ftp-proxy bench FTPS server"',
    'ServerType standalone',
    'DefaultServer on',
    `DefaultAddress ${addresses.join(' ')}`,
    'SocketBindTight on',
    'Port 21',
    'UseIPv6 off',
    'User nobody',
    'Group nogroup',
    'MaxInstances 400',
    `PidFile ${dir}/ftps-server.pid`,
    `ScoreboardFile ${dir}/ftps-server.scoreboard`,
    'DelayEngine off',
    'WtmpLog off',
    'UseReverseDNS off',
    `SystemLog ${dir}/ftps-server.log`,
    'TransferLog none',
    `PassivePorts ${pasv[0]} ${pasv[1]}`,
    'AuthOrder mod_auth_file.c',
    `AuthUserFile ${passwd}`,
    'RequireValidShell off',
    'DefaultRoot ~',
    'TimeoutIdle 300',
    'LoadModule mod_tls.c',
    'TLSEngine on',
    // the control connection must be TLS; data as the client asks (PROT P, or PROT C after CCC)
    'TLSRequired ctrl',
    `TLSLog ${dir}/ftps-server.tls.log`,
    'TLSProtocol TLSv1.2 TLSv1.3',
    `TLSRSACertificateFile ${cert}`,
    `TLSRSACertificateKeyFile ${key}`,
    'TLSVerifyClient off',
    '',
  ].join('\n');
}

/**
 * proftpd's mod_proxy as a reverse FTPS proxy on address:port: mod_tls towards the client (TLS required
 * on control; data as the client asks), FTPS to the backend, data protection on the backend as on the
 * client (ProxyTLSTransferProtectionPolicy client), passive data ports pasv on the firewall.
 */
export function modProxyConf({ dir, address, port, backend, cert, key, ca, pasv }) {
  return [
    'ServerName "ftp-proxy bench: mod_proxy"',
    'ServerType standalone',
    'DefaultServer on',
    `DefaultAddress ${address}`,
    'SocketBindTight on',
    `Port ${port}`,
    'UseIPv6 off',
    // mod_proxy's session processes need no privileges after binding; its tables directory is theirs
    'User nobody',
    'Group nogroup',
    'MaxInstances 400',
    `PidFile ${dir}/mod-proxy.pid`,
    `ScoreboardFile ${dir}/mod-proxy.scoreboard`,
    'DelayEngine off',
    'WtmpLog off',
    'UseReverseDNS off',
    `SystemLog ${dir}/mod-proxy.log`,
    'TransferLog none',
    `PassivePorts ${pasv[0]} ${pasv[1]}`,
    'LoadModule mod_tls.c',
    'LoadModule mod_proxy.c',
    'TLSEngine on',
    'TLSRequired ctrl',
    `TLSLog ${dir}/mod-proxy.tls.log`,
    'TLSProtocol TLSv1.2 TLSv1.3',
    `TLSRSACertificateFile ${cert}`,
    `TLSRSACertificateKeyFile ${key}`,
    'TLSVerifyClient off',
    '<IfModule mod_proxy.c>',
    '  ProxyEngine on',
    `  ProxyLog ${dir}/mod-proxy.proxy.log`,
    `  ProxyTables ${dir}/mod-proxy-tables`,
    '  ProxyRole reverse',
    `  ProxyReverseServers ftp://${backend}:21`,
    '  ProxyTLSEngine on',
    '  ProxyTLSProtocol TLSv1.2 TLSv1.3',
    `  ProxyTLSCACertificateFile ${ca}`,
    '  ProxyTLSVerifyServer on',
    '  ProxyTLSTransferProtectionPolicy client',
    '  ProxyDataTransferPolicy client',
    '</IfModule>',
    '',
  ].join('\n');
}

/**
 * ftp-proxy's policy file for the FTPS rows: TLS with the client (the proxy answers AUTH TLS) and, exactly
 * then, with the server; the certificate the server has (it names the server's address), the lab CA to
 * check the server with.
 */
export function ftpProxyTlsPolicy({ cert, key, ca }) {
  return ['tls_client accept', 'tls_server forward', `tls_certificate "${cert}"`, `tls_key "${key}"`, `tls_server_ca "${ca}"`, ''].join('\n');
}

/** curl's options for a download: PROT P (data under TLS), or PROT C after CCC (the control channel back in clear text). */
export function curlTlsArgs(prot, ca) {
  return prot === 'p' ? ['--ssl-reqd', '--cacert', ca] : ['--ftp-ssl-control', '--ftp-ssl-ccc', '--cacert', ca];
}

// The FTP commands the proxy knows by name (permit_unknown_command speaks of the others), and the
// `minimal` profile: what everyday clients (lftp, curl, tnftp, FileZilla, browsers) need to log in, list,
// download and upload.

/** RFC 959, 775 (X*), 1639 (LPRT/LPSV), 2228, 2389, 2428, 2640, 3659, 7151, and common drafts. */
export const KNOWN_COMMANDS: ReadonlySet<string> = new Set([
  // RFC 959
  'USER', 'PASS', 'ACCT', 'CWD', 'CDUP', 'SMNT', 'REIN', 'QUIT', 'PORT', 'PASV', 'TYPE', 'STRU', 'MODE',
  'RETR', 'STOR', 'STOU', 'APPE', 'ALLO', 'REST', 'RNFR', 'RNTO', 'ABOR', 'DELE', 'RMD', 'MKD', 'PWD',
  'LIST', 'NLST', 'SITE', 'SYST', 'STAT', 'HELP', 'NOOP',
  // RFC 775
  'XCUP', 'XCWD', 'XMKD', 'XPWD', 'XRMD',
  // RFC 1639, 2228, 2389, 2428, 2640, 3659, 7151
  'LPRT', 'LPSV', 'AUTH', 'ADAT', 'PROT', 'PBSZ', 'CCC', 'MIC', 'CONF', 'ENC', 'FEAT', 'OPTS', 'EPRT',
  'EPSV', 'LANG', 'MDTM', 'SIZE', 'MLST', 'MLSD', 'HOST',
  // widely implemented drafts and extensions
  'MFMT', 'MFCT', 'MFF', 'AVBL', 'CLNT', 'HASH',
]);

/** profile minimal: login, navigation, listings, transfers in both directions, simple file management. */
export const MINIMAL_COMMANDS: ReadonlySet<string> = new Set([
  'USER', 'PASS', 'QUIT', 'NOOP', 'SYST', 'FEAT', 'OPTS', 'TYPE', 'MODE', 'STRU',
  'PWD', 'XPWD', 'CWD', 'XCWD', 'CDUP', 'XCUP',
  'PASV', 'EPSV', 'PORT', 'EPRT',
  'LIST', 'NLST', 'MLSD', 'MLST', 'STAT', 'SIZE', 'MDTM',
  'RETR', 'REST', 'ABOR', 'STOR', 'APPE',
  'DELE', 'MKD', 'XMKD', 'RMD', 'XRMD', 'RNFR', 'RNTO',
]);

// Port arguments as getaddrinfo(3) takes them: a number or a service name from /etc/services ("ftp").
import { readFileSync } from 'node:fs';

/** The tcp port of `name` in services(5) text, or null. */
export function lookupService(text: string, name: string): number | null {
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [service, portProto, ...aliases] = line.split(/\s+/);
    const m = /^(\d+)\/tcp$/.exec(portProto ?? '');
    if (!m) continue;
    if (service === name || aliases.includes(name)) return Number(m[1]);
  }
  return null;
}

let servicesText: string | null = null;

/** A port number 1..65535 from "21" or "ftp"; null when it is neither. */
export function resolvePort(spec: string, services = (): string => (servicesText ??= readServices())): number | null {
  if (/^\d+$/.test(spec)) {
    const n = Number(spec);
    return n >= 1 && n <= 65535 ? n : null;
  }
  if (!/^[A-Za-z][\w.+-]*$/.test(spec)) return null;
  return lookupService(services(), spec);
}

function readServices(): string {
  try {
    return readFileSync('/etc/services', 'utf8');
  } catch {
    return 'ftp 21/tcp\n'; // a host without services(5): the one name this daemon is likely to meet
  }
}

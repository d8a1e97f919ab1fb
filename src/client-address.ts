/**
 * The client's IP address is personal data, and every event carries it (`metadata.ip_address`): into the
 * audit trail, kept for ever, and the error log. What is stored is chosen once (EVENT_IP_ADDRESS) and
 * applied where the event is built, so no consumer, spool file or dashboard ever sees more.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

export const IP_ADDRESS_MODES = ['full', 'truncated', 'hashed'] as const;
/**
 * `full`: as received. `truncated`: the network only, IPv4 to its /24 (`203.0.113.0`), IPv6 to its /48
 * (`2001:db8:1::`). `hashed`: `hmac:` + an HMAC-SHA-256 of the address under a secret key (a plain hash of
 * an IPv4 address is undone by hashing all 2^32 of them), so events of one client can still be grouped.
 */
export type IpAddressMode = (typeof IP_ADDRESS_MODES)[number];

/** IPv6 text (no IPv4 tail, no zone) as its 16-bit groups. */
function ipv6Groups(address: string): number[] {
  const parse = (part: string) =>
    part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16));
  const [head = '', rest] = address.split('::');
  if (rest === undefined) return parse(head);
  const before = parse(head);
  const after = parse(rest);
  return [...before, ...new Array<number>(8 - before.length - after.length).fill(0), ...after];
}

/** The address with its host part zeroed: IPv4 /24, IPv6 /48 (an IPv4-mapped IPv6 address as IPv4). */
export function truncateIpAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return `::ffff:${truncateIpAddress(mapped[1] as string)}`;
  if (isIPv4(address)) return address.replace(/\.\d+$/, '.0');
  if (isIPv6(address)) {
    const unzoned = address.replace(/%.*$/, '');
    // Another IPv4-in-IPv6 form (deprecated ::192.0.2.1): nothing of it is kept.
    if (unzoned.includes('.')) return '::';
    const groups = ipv6Groups(unzoned);
    if (groups.length !== 8) return '::';
    return `${groups
      .slice(0, 3)
      .map((group) => group.toString(16))
      .join(':')}::`;
  }
  return '';
}

/**
 * How an address is stored under `mode`. `secret` keys the hash; without one a random key is drawn per
 * process, so that hashes group a client's events within one process's life and cannot be undone, but
 * do not match across processes or restarts.
 */
export function clientAddressRecorder(mode: IpAddressMode, secret = ''): (address: string) => string {
  switch (mode) {
    case 'full':
      return (address) => address.slice(0, 64);
    case 'truncated':
      return truncateIpAddress;
    case 'hashed': {
      const key = secret === '' ? randomBytes(32) : Buffer.from(secret);
      return (address) =>
        address === ''
          ? ''
          : `hmac:${createHmac('sha256', key).update(address).digest('base64url').slice(0, 32)}`;
    }
  }
}

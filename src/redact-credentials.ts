/**
 * Credentials never reach an output: the configuration's error messages, logs, `/health`, the CLI's last
 * words all pass URLs (and texts that may quote one) through here. A password in a URL is the one
 * secret the configuration holds, and a list of URLs (one per node) holds several.
 */

/**
 * Any text with the password of every URL in it hidden (`scheme://user:***@host`): a configuration
 * value (one URL, a list, something malformed), an error message, a stack. The user name stays, so an
 * operator can still tell which credentials were used.
 *
 * Written for the worst case rather than for valid URLs: a password written unencoded may hold `@`, `:`,
 * `/` or `,`, so the credentials of a URL are everything up to the last `@` before the next URL, a space
 * or a quote. That can hide more than the password (a host, when a path holds an `@`), never less. In
 * text without any URL, a word `user:password@host` (a URL whose scheme was forgotten) is hidden too.
 */
export function redactCredentials(text: string): string {
  const starts = [...text.matchAll(URL_SCHEME)];
  let result = '';
  let copied = 0;
  for (const [index, match] of starts.entries()) {
    const authorityStart = match.index + match[0].length;
    const next = starts[index + 1]?.index ?? text.length;
    const stop = text.slice(authorityStart, next).search(/[\s"'`<>]/);
    const run = text.slice(authorityStart, stop < 0 ? next : authorityStart + stop);
    const at = run.lastIndexOf('@');
    const colon = at < 0 ? -1 : run.slice(0, at).indexOf(':');
    if (colon < 0) continue;
    result += `${text.slice(copied, authorityStart + colon + 1)}***`;
    copied = authorityStart + at;
  }
  // `user:password@host` written without a scheme: each word of that shape.
  return (result + text.slice(copied)).replace(BARE_CREDENTIALS, '$1***@');
}

const URL_SCHEME = /[a-z][a-z0-9+.-]*:\/\//gi;
const BARE_CREDENTIALS = /((?:^|[\s,"'`])[^\s,"'`:@/]*:)(?!\/\/)[^\s,"'`]*@/g;

/** An error's message (or a thrown value's text), with any credentials in it hidden. */
export function redactedMessage(error: unknown): string {
  return redactCredentials(error instanceof Error ? error.message : String(error));
}

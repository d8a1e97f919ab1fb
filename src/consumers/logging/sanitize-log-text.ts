/**
 * Makes text from requests safe to put in a log line. Two threats, two pure functions:
 *
 * - **Secrets** ({@link redactSecrets}): an API key pasted into a user agent or echoed in an error message,
 *   a password in a connection URL quoted by a driver error. pino's `redact` only covers known paths of
 *   the logged object; this covers free text.
 * - **Log forging and terminal injection** ({@link neutralizeControlCharacters}): a CR/LF in a user agent
 *   that starts a fake log line for whoever reads the file raw or through `jq -r`, an ANSI CSI/OSC sequence
 *   that recolours, retitles or clears the terminal of whoever `tail`s it. JSON escaping alone is not
 *   enough: every JSON reader turns `\u001b` back into a real ESC. So each control character is replaced by
 *   its escape as visible text (`\u001b`), which a reader shows as those six characters and never
 *   interprets; the rest of the sequence (`[31m`) is then inert text, kept for forensics.
 */

/** What replaces a redacted secret (the same marker as the process logger's `redact`). */
export const REDACTED = '[redacted]';

export const SECRET_PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  // Our API keys: `tb_` + 43 base64url characters. Longer runs too (a key glued to other text); shorter
  // `tb_` names (databases, tables) are not keys.
  [/tb_[A-Za-z0-9_-]{43,}/g, `tb_${REDACTED}`],
  // Credentials in a URL's user info: scheme://user:password@host (the password may itself hold an @).
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*):[^\s/?#]*@/gi, `$1:${REDACTED}@`],
  // Header values quoted in text: `x-api-key: …`, `"authorization":"Bearer …"`, `cookie=…`.
  [
    /\b(x-api-key|authorization|proxy-authorization|cookie)(["']?\s*[:=]\s*["']?)(?:(?:bearer|basic)\s+)?[^\s"',;&]+/gi,
    `$1$2${REDACTED}`,
  ],
  // key=value pairs whose name ends in a secret's name, in query strings and libpq connection strings.
  [/\b([A-Za-z0-9_-]*(?:password|passwd|pwd|secret|token|api[_-]?key))=[^\s&;#"']*/gi, `$1=${REDACTED}`],
  // The same in JSON quoted in a message: "password":"…".
  [
    /("[A-Za-z0-9_-]*(?:password|passwd|pwd|secret|token|api[_-]?key)"\s*:\s*")(?:[^"\\]|\\.)*"/gi,
    `$1${REDACTED}"`,
  ],
];

/**
 * Text none of {@link SECRET_PATTERNS} can match lacks all of these (each pattern needs one of them): one
 * test instead of five replacements for the usual field — a uuid, a timestamp, a route, a user agent.
 */
const MAY_HOLD_SECRET = /tb_|:\/\/|x-api-key|authorization|cookie|passw|pwd|secret|token|api[_-]?key/i;

/** Replaces API keys, URL passwords, quoted credential headers and `password=`-style values by a marker. */
export function redactSecrets(text: string): string {
  if (!MAY_HOLD_SECRET.test(text)) return text;
  let result = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) result = result.replace(pattern, replacement);
  return result;
}

/**
 * Characters a terminal, a log viewer or a line-based tool may act on: C0 controls (CR, LF, TAB, ESC, BEL,
 * NUL…), DEL, C1 controls (U+009B is a one-character CSI on some terminals), the Unicode line and
 * paragraph separators (line breaks to some viewers), bidirectional overrides and marks (text that reads
 * differently from what it is), the byte-order mark, and lone surrogates (not valid UTF-8 at all).
 */
const UNSAFE_CHARACTERS =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]/gu;

function escapeCharacter(character: string): string {
  return `\\u${(character.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`;
}

/**
 * Replaces every unsafe character (see {@link UNSAFE_CHARACTERS}) by its escape as plain text: CR becomes
 * the six characters `\u000d`, ESC becomes `\u001b`. Everything else is kept as it is, so ordinary text is
 * unchanged and the result is safe whatever reads it, on one line.
 */
export function neutralizeControlCharacters(text: string): string {
  return text.replace(UNSAFE_CHARACTERS, escapeCharacter);
}

/** For a free-text field from a request (user agent, message, model id, path): secrets out, controls inert. */
export function sanitizeLogText(text: string): string {
  return neutralizeControlCharacters(redactSecrets(text));
}

/**
 * For a stack trace: line breaks are its structure (log tools show it as lines), so each line is
 * sanitised on its own and the lines are joined with LF again; CR and every other control character is
 * escaped. The whole trace stays one JSON string, so it can never make a log line of its own.
 */
export function sanitizeStackTrace(stack: string): string {
  return stack
    .split(/\r?\n/)
    .map((line) => sanitizeLogText(line))
    .join('\n');
}

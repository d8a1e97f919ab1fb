/**
 * Log-line sanitising against nasty inputs: forged lines (CR/LF), terminal escape sequences (CSI, OSC,
 * one-character C1 CSI), Unicode line separators and bidi overrides, lone surrogates; and secrets in free
 * text. The properties check the invariants over generated strings with an independent definition of
 * "unsafe", the examples pin the exact output.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  neutralizeControlCharacters,
  redactSecrets,
  SECRET_PATTERNS,
  sanitizeLogText,
  sanitizeStackTrace,
} from '../../../src/consumers/logging/sanitize-log-text.ts';

/** Written out separately from the implementation's regular expression, on purpose. */
function isUnsafe(codePoint: number): boolean {
  return (
    codePoint <= 0x1f ||
    (codePoint >= 0x7f && codePoint <= 0x9f) ||
    codePoint === 0x061c ||
    codePoint === 0x200e ||
    codePoint === 0x200f ||
    codePoint === 0x2028 ||
    codePoint === 0x2029 ||
    (codePoint >= 0x202a && codePoint <= 0x202e) ||
    (codePoint >= 0x2066 && codePoint <= 0x2069) ||
    codePoint === 0xfeff ||
    (codePoint >= 0xd800 && codePoint <= 0xdfff)
  );
}

function unsafeCharacters(text: string): string[] {
  return [...text].filter((character) => isUnsafe(character.codePointAt(0) ?? 0));
}

const KEY_BODY = 'Zx9_-aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ'; // 43 base64url characters
const KEY = `tb_${KEY_BODY}`;

/** Strings rich in what hurts: control characters, escape-sequence pieces, separators, half surrogates. */
const nastyString = fc.string({
  unit: fc.oneof(
    fc.constantFrom(
      '\r',
      '\n',
      '\t',
      '\u0000',
      '\u0007',
      '\u001b',
      '\u007f',
      '\u0085',
      '\u009b',
      '\u009d',
      '\u2028',
      '\u2029',
      '\u202e',
      '\u2066',
      '\ufeff',
      '\ud800',
      '\udfff',
      '[',
      ']',
      ';',
      '3',
      '1',
      'm',
      '\\',
      'u',
      ':',
      '@',
      '/',
      '=',
      't',
      'b',
      '_',
    ),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  ),
  maxLength: 200,
});

/** Characters no rule touches: printable ASCII minus the backslash, and some non-ASCII letters and emoji. */
const safeCharacter = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)),
  fc.constantFrom('é', 'ü', 'ß', 'Ж', '中', '文', '🚀', '👍🏽', '\u00a0'),
);

describe('neutralizeControlCharacters', () => {
  test('CR/LF cannot start a forged line', () => {
    assert.equal(
      neutralizeControlCharacters('curl/8\r\n{"level":30,"msg":"FAKE LOG LINE"}'),
      'curl/8\\u000d\\u000a{"level":30,"msg":"FAKE LOG LINE"}',
    );
  });

  test('ANSI CSI and OSC sequences, and the one-character C1 CSI, become inert text', () => {
    assert.equal(neutralizeControlCharacters('\u001b[31mred\u001b[0m'), '\\u001b[31mred\\u001b[0m');
    assert.equal(
      neutralizeControlCharacters('\u001b]0;owned\u0007\u001b]8;;http://x\u001b\\'),
      '\\u001b]0;owned\\u0007\\u001b]8;;http://x\\u001b\\',
    );
    assert.equal(neutralizeControlCharacters('\u009b2J\u009d0;t\u009c'), '\\u009b2J\\u009d0;t\\u009c');
    assert.equal(neutralizeControlCharacters('a\u001b[2J\u001b[H'), 'a\\u001b[2J\\u001b[H');
  });

  test('NUL, backspace, tab, DEL, line separators, bidi overrides, BOM and lone surrogates are escaped', () => {
    assert.equal(neutralizeControlCharacters('a\u0000b\bc\td\u007f'), 'a\\u0000b\\u0008c\\u0009d\\u007f');
    assert.equal(neutralizeControlCharacters('x\u2028y\u2029z\u0085'), 'x\\u2028y\\u2029z\\u0085');
    assert.equal(neutralizeControlCharacters('user\u202eexe.txt'), 'user\\u202eexe.txt');
    assert.equal(neutralizeControlCharacters('\ufeffbom'), '\\ufeffbom');
    assert.equal(neutralizeControlCharacters('half \ud800 pair \udc00'), 'half \\ud800 pair \\udc00');
  });

  test('ordinary text, including non-ASCII letters and emoji (surrogate pairs), is unchanged', () => {
    for (const text of [
      'Mozilla/5.0 (X11; Linux x86_64)',
      'Müller café 中文 🚀 👍🏽',
      'openai/gpt-4-turbo',
      '',
    ]) {
      assert.equal(neutralizeControlCharacters(text), text);
    }
  });

  test('property: the result holds no unsafe character, whatever the input', () => {
    fc.assert(
      fc.property(nastyString, (text) => {
        assert.deepEqual(unsafeCharacters(neutralizeControlCharacters(text)), []);
      }),
      { numRuns: 2000 },
    );
  });

  test('property: text without unsafe characters is unchanged', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 100 }), (text) => {
        fc.pre(unsafeCharacters(text).length === 0);
        assert.equal(neutralizeControlCharacters(text), text);
      }),
      { numRuns: 1000 },
    );
  });

  test('property: nothing is lost — without backslashes in the input, unescaping gives it back', () => {
    const decodeEscapes = (text: string) =>
      text.replace(/\\u([0-9a-f]{4})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
    fc.assert(
      fc.property(nastyString, (text) => {
        fc.pre(!text.includes('\\'));
        assert.equal(decodeEscapes(neutralizeControlCharacters(text)), text);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('redactSecrets', () => {
  test('API keys, wherever they are', () => {
    assert.equal(redactSecrets(`invalid key ${KEY}`), 'invalid key tb_[redacted]');
    assert.equal(redactSecrets(`${KEY}.`), 'tb_[redacted].');
    assert.equal(redactSecrets(`"${KEY}" and '${KEY}'`), '"tb_[redacted]" and \'tb_[redacted]\'');
    assert.equal(redactSecrets(`/models?key=${KEY}&x=1`), '/models?key=tb_[redacted]&x=1');
    assert.equal(redactSecrets(`${KEY}EXTRA`), 'tb_[redacted]', 'a key glued to more text');
  });

  test('passwords in URLs, including one holding an @', () => {
    assert.equal(
      redactSecrets('connect ECONNREFUSED postgres://app:s3cr3t@db:5432/registry'),
      'connect ECONNREFUSED postgres://app:[redacted]@db:5432/registry',
    );
    assert.equal(
      redactSecrets('amqp://guest:guest@127.0.0.1:5672/'),
      'amqp://guest:[redacted]@127.0.0.1:5672/',
    );
    assert.equal(redactSecrets('https://u:p@ss@host/x?y=a@b'), 'https://u:[redacted]@host/x?y=a@b');
  });

  test('credential headers and key=value secrets quoted in text', () => {
    assert.equal(redactSecrets('x-api-key: abc123'), 'x-api-key: [redacted]');
    assert.equal(redactSecrets('{"x-api-key":"abc123","a":1}'), '{"x-api-key":"[redacted]","a":1}');
    assert.equal(redactSecrets('X-Api-Key=abc123;'), 'X-Api-Key=[redacted];');
    assert.equal(redactSecrets('Authorization: Bearer eyJhbGci.x.y'), 'Authorization: [redacted]');
    assert.equal(redactSecrets('host=db password=hunter2 user=app'), 'host=db password=[redacted] user=app');
    assert.equal(
      redactSecrets('?db_password=hunter2&client_secret=s'),
      '?db_password=[redacted]&client_secret=[redacted]',
    );
    assert.equal(redactSecrets('{"password":"a\\"b","user":"u"}'), '{"password":"[redacted]","user":"u"}');
  });

  test('no false alarms on what only looks like a secret', () => {
    for (const text of [
      'tb_test_0123456789abcdef0123456789abcdef', // a database name: not 43 characters after tb_
      'max_tokens=100',
      'http://host:8080/models',
      'http://user@host/x',
      'password: must be at least 12 characters',
      'openai/gpt-4-turbo',
    ]) {
      assert.equal(redactSecrets(text), text);
    }
  });
  test('property: the quick test that skips the patterns never skips text one of them changes', () => {
    const fragment = fc.constantFrom(
      'tb_',
      KEY_BODY,
      'postgres://',
      'user:pw@',
      'X-API-Key: ',
      'Authorization: Bearer ',
      'Proxy-Authorization=',
      'cookie=',
      'PASSWORD=',
      'passwd=',
      'db_pwd=',
      'client_secret=',
      'access_token=',
      'apikey=',
      'Api-Key=',
      '"password":"x"',
      ' ',
      '&',
      'x',
      '@',
      ':',
      '/',
      '"',
    );
    const text = fc
      .array(fc.oneof(fragment, fc.string({ maxLength: 4 })), { maxLength: 12 })
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(text, (input) => {
        let expected = input;
        for (const [pattern, replacement] of SECRET_PATTERNS)
          expected = expected.replace(pattern, replacement);
        assert.equal(redactSecrets(input), expected);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('sanitizeLogText', () => {
  test('a user agent with a forged line, colours and a key', () => {
    assert.equal(
      sanitizeLogText(`curl\r\nFAKE LOG LINE \u001b[31m${KEY}\u001b[0m`),
      'curl\\u000d\\u000aFAKE LOG LINE \\u001b[31mtb_[redacted]\\u001b[0m',
    );
  });

  test('property: a key anywhere in nasty text never survives, and no unsafe character does', () => {
    fc.assert(
      fc.property(nastyString, nastyString, (before, after) => {
        const result = sanitizeLogText(before + KEY + after);
        assert.ok(!result.includes(KEY_BODY), result);
        assert.deepEqual(unsafeCharacters(result), []);
      }),
      { numRuns: 2000 },
    );
  });

  test('property: sanitising twice changes nothing more', () => {
    fc.assert(
      fc.property(nastyString, (text) => {
        const once = sanitizeLogText(text);
        assert.equal(sanitizeLogText(once), once);
      }),
      { numRuns: 2000 },
    );
  });

  test('property: safe text without secrets is unchanged', () => {
    fc.assert(
      fc.property(fc.string({ unit: safeCharacter, maxLength: 100 }), (text) => {
        fc.pre(redactSecrets(text) === text);
        assert.equal(sanitizeLogText(text), text);
      }),
    );
  });
});

describe('sanitizeStackTrace', () => {
  test('keeps the lines of a stack, escapes CR and escape sequences, redacts secrets', () => {
    const stack = `Error: bad key ${KEY}\u001b[2J\r\n    at handler (src/x.ts:1:2)\n    at run (src/y.ts:3:4)`;
    assert.equal(
      sanitizeStackTrace(stack),
      'Error: bad key tb_[redacted]\\u001b[2J\n    at handler (src/x.ts:1:2)\n    at run (src/y.ts:3:4)',
    );
  });

  test('property: LF is the only control character left, and the line count is kept', () => {
    fc.assert(
      fc.property(nastyString, (text) => {
        const result = sanitizeStackTrace(text);
        assert.deepEqual(
          unsafeCharacters(result).filter((character) => character !== '\n'),
          [],
        );
        assert.equal(result.split('\n').length, text.split(/\r?\n/).length);
      }),
      { numRuns: 1000 },
    );
  });
});

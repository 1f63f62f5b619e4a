import { describe, expect, it } from 'vitest';
import { parseCsv } from './csv.js';
import { LegacyValidationError, parseLegacyExport, purchaseColumns, userColumns } from './legacy-rows.js';

// The legacy export's reader and validator, pure: RFC 4180 quoting, CRLF/LF, line numbers that
// are the file's physical lines, and validation that names file, line and column and returns
// nothing at all when any row is bad.

const usersHeader = userColumns.join(',');
const purchasesHeader = purchaseColumns.join(',');

function rejection(usersCsv: string, purchasesCsv: string): string[] {
  let result: unknown;
  try {
    result = parseLegacyExport(usersCsv, purchasesCsv);
  } catch (error) {
    expect(error).toBeInstanceOf(LegacyValidationError);
    const problems = (error as LegacyValidationError).problems;
    expect((error as Error).message).toContain('nothing imported');
    for (const p of problems) expect((error as Error).message).toContain(p);
    return problems;
  }
  throw new Error(`expected the export to be rejected, but it was accepted: ${JSON.stringify(result, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
}

const goodUsers = [
  usersHeader,
  'u1,100,60,30,pro,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z',
  'u2,5,0,0,,,',
  'u3,0,0,0,,,',
].join('\n');
const goodPurchases = [purchasesHeader, 'p1,u1,100,999,usd,cs_1,completed,2026-10-02T10:00:00Z'].join('\n');

describe('parseCsv', () => {
  it('reads quoted fields: commas, doubled quotes, line breaks inside quotes, empty quoted fields', () => {
    const text = 'a,b,c\n"x,1","say ""hi""",""\n"multi\nline",plain,"ends\r\nwith crlf"\nlast,row,here';
    expect(parseCsv(text)).toEqual([
      { line: 1, fields: ['a', 'b', 'c'] },
      { line: 2, fields: ['x,1', 'say "hi"', ''] },
      { line: 3, fields: ['multi\nline', 'plain', 'ends\r\nwith crlf'] },
      // Records after a quoted line break keep counting physical lines.
      { line: 6, fields: ['last', 'row', 'here'] },
    ]);
  });

  it('treats CRLF, LF and CR line ends alike, skips blank lines, with or without a final line end', () => {
    const lf = 'h1,h2\n1,2\n\n3,4\n';
    const crlf = 'h1,h2\r\n1,2\r\n\r\n3,4\r\n';
    const cr = 'h1,h2\r1,2\r\r3,4';
    const expected = [
      { line: 1, fields: ['h1', 'h2'] },
      { line: 2, fields: ['1', '2'] },
      { line: 4, fields: ['3', '4'] },
    ];
    expect(parseCsv(lf)).toEqual(expected);
    expect(parseCsv(crlf)).toEqual(expected);
    expect(parseCsv(cr)).toEqual(expected);
    expect(parseCsv('h1,h2\r\n1,2')).toEqual(expected.slice(0, 2));
    expect(parseCsv('a,,\n,,')).toEqual([
      { line: 1, fields: ['a', '', ''] },
      { line: 2, fields: ['', '', ''] },
    ]);
  });

  it('an unterminated quote is an error naming the line where its record starts', () => {
    expect(() => parseCsv('h1,h2\n1,2\n"open,3\nstill open\n')).toThrow(/line 3: unterminated quoted field/);
  });
});

describe('parseLegacyExport', () => {
  it('accepts a valid export, with the line of every row, whether CRLF or LF', () => {
    const parsed = parseLegacyExport(goodUsers, goodPurchases);
    expect(parsed.users).toEqual([
      {
        line: 2, userId: 'u1', current: 100n, purchased: 60n, subscription: 30n, plan: 'pro',
        periodStart: new Date('2026-11-01T00:00:00Z'), periodEnd: new Date('2026-12-01T00:00:00Z'),
      },
      { line: 3, userId: 'u2', current: 5n, purchased: 0n, subscription: 0n, plan: '', periodStart: null, periodEnd: null },
      { line: 4, userId: 'u3', current: 0n, purchased: 0n, subscription: 0n, plan: '', periodStart: null, periodEnd: null },
    ]);
    expect(parsed.purchases).toEqual([
      {
        line: 2, id: 'p1', userId: 'u1', credits: 100n, amountCents: 999n, currency: 'USD', stripeSessionId: 'cs_1',
        status: 'completed', createdAt: new Date('2026-10-02T10:00:00Z'),
      },
    ]);
    const crlf = parseLegacyExport(goodUsers.replaceAll('\n', '\r\n') + '\r\n', goodPurchases.replaceAll('\n', '\r\n'));
    expect(crlf).toEqual(parsed);
  });

  it('reads quoted values (a comma or a quote in an id, a plan over two lines) and columns in any order', () => {
    const users = [
      'subscription_plan,user_id,current_balance,purchased_credits_balance,subscription_credits_balance,subscription_period_start,subscription_period_end',
      '"Pro, annual","u,1",10,0,10,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z',
      '"Legacy\nplan","q""2",3,0,0,,',
      'basic,u3,1,1,0,,',
    ].join('\r\n');
    const purchases = [purchasesHeader, '"p,1","u,1",10,500,EUR,"cs_""x""",completed,2026-10-01T00:00:00Z'].join('\n');
    const parsed = parseLegacyExport(users, purchases);
    expect(parsed.users.map((u) => ({ line: u.line, userId: u.userId, plan: u.plan, current: u.current }))).toEqual([
      { line: 2, userId: 'u,1', plan: 'Pro, annual', current: 10n },
      { line: 3, userId: 'q"2', plan: 'Legacy plan', current: 3n },
      { line: 5, userId: 'u3', plan: 'basic', current: 1n },
    ]);
    expect(parsed.purchases.map((p) => ({ id: p.id, userId: p.userId, session: p.stripeSessionId }))).toEqual([
      { id: 'p,1', userId: 'u,1', session: 'cs_"x"' },
    ]);
  });

  const userRow = (over: Partial<Record<(typeof userColumns)[number], string>>) => {
    const row: Record<string, string> = {
      user_id: 'ok', current_balance: '10', purchased_credits_balance: '0', subscription_credits_balance: '0',
      subscription_plan: '', subscription_period_start: '', subscription_period_end: '', ...over,
    };
    return userColumns.map((c) => row[c]).join(',');
  };
  const purchaseRow = (over: Partial<Record<(typeof purchaseColumns)[number], string>>) => {
    const row: Record<string, string> = {
      id: 'pX', user_id: 'u1', credits: '10', amount_cents: '100', currency: 'USD', stripe_session_id: 'cs',
      status: 'completed', created_at: '2026-10-01T00:00:00Z', ...over,
    };
    return purchaseColumns.map((c) => row[c]).join(',');
  };

  // Each bad field, in the third physical line of its file (after a good row), is reported as
  // "<file> line 3, <column>: …", and the export is refused as a whole.
  const userFieldCases: [string, Partial<Record<(typeof userColumns)[number], string>>][] = [
    ['user_id', { user_id: 'has space' }],
    ['user_id', { user_id: '' }],
    ['user_id', { user_id: 'x'.repeat(129) }],
    ['current_balance', { current_balance: '-5' }],
    ['current_balance', { current_balance: '1.5' }],
    ['current_balance', { current_balance: 'ten' }],
    ['current_balance', { current_balance: '1e3' }],
    ['current_balance', { current_balance: '' }],
    ['purchased_credits_balance', { purchased_credits_balance: '0x10' }],
    ['subscription_credits_balance', { subscription_credits_balance: '-1' }],
    ['current_balance', { current_balance: '10', purchased_credits_balance: '8', subscription_credits_balance: '3', subscription_period_end: '2026-12-01T00:00:00Z' }],
    ['subscription_period_end', { subscription_credits_balance: '5' }],
    ['subscription_period_end', { subscription_period_start: '2026-12-01T00:00:00Z', subscription_period_end: '2026-11-01T00:00:00Z' }],
    ['subscription_period_start', { subscription_period_start: 'yesterday' }],
    ['subscription_period_end', { subscription_period_end: '2026-13-45T00:00:00Z' }],
    ['subscription_plan', { subscription_plan: 'p'.repeat(65) }],
  ];
  for (const [column, over] of userFieldCases) {
    it(`user_credits.csv: ${column} = ${JSON.stringify(over).slice(0, 60)} is reported with file, line and column`, () => {
      const users = [usersHeader, userRow({ user_id: 'u1' }), userRow({ user_id: 'u2', ...over })].join('\n');
      const problems = rejection(users, purchasesHeader);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^user_credits\\.csv line 3, ${column}: `));
    });
  }

  const purchaseFieldCases: [string, Partial<Record<(typeof purchaseColumns)[number], string>>][] = [
    ['id', { id: 'bad id' }],
    ['user_id', { user_id: '' }],
    ['credits', { credits: '0' }],
    ['credits', { credits: '-3' }],
    ['amount_cents', { amount_cents: '9.99' }],
    ['currency', { currency: 'US' }],
    ['currency', { currency: 'US$' }],
    ['created_at', { created_at: '' }],
    ['created_at', { created_at: '01/10/2026' }],
  ];
  for (const [column, over] of purchaseFieldCases) {
    it(`user_credit_purchases.csv: ${column} = ${JSON.stringify(over)} is reported with file, line and column`, () => {
      const purchases = [purchasesHeader, purchaseRow({ id: 'p1' }), purchaseRow({ id: 'p2', ...over })].join('\n');
      const problems = rejection(goodUsers, purchases);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^user_credit_purchases\\.csv line 3, ${column}: `));
    });
  }

  it('rows that disagree with each other are reported with file, line and the column at fault', () => {
    const users = [usersHeader, userRow({ user_id: 'u1' }), userRow({ user_id: 'u2' }), userRow({ user_id: 'u1' })].join('\n');
    const purchases = [
      purchasesHeader,
      purchaseRow({ id: 'p1', user_id: 'u1', currency: 'USD' }),
      purchaseRow({ id: 'p1', user_id: 'u2' }),
      purchaseRow({ id: 'p3', user_id: 'nobody' }),
      purchaseRow({ id: 'p4', user_id: 'u1', currency: 'EUR' }),
      purchaseRow({ id: 'p5', user_id: 'u1', currency: 'GBP', status: 'refunded' }),
    ].join('\n');
    const problems = rejection(users, purchases);
    expect(problems).toHaveLength(4);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^user_credits\.csv line 4: .*user_id.*"u1".*line 2/),
        expect.stringMatching(/^user_credit_purchases\.csv line 3: .*\bid\b.*"p1".*line 2/),
        expect.stringMatching(/^user_credit_purchases\.csv line 4: .*user_id.*"nobody"/),
        expect.stringMatching(/^user_credit_purchases\.csv line 5: .*currency/),
      ]),
    );
  });

  it('structural problems: field count (with the line), missing columns, empty files, unterminated quotes', () => {
    expect(rejection([usersHeader, 'u1,1,0,0,,'].join('\n'), purchasesHeader)).toEqual([
      'user_credits.csv line 2: 6 fields, the header has 7',
    ]);
    expect(rejection('user_id,current_balance\nu1,1', purchasesHeader)).toEqual([
      expect.stringMatching(/^user_credits\.csv line 1: missing columns purchased_credits_balance, subscription_credits_balance, subscription_plan/),
    ]);
    expect(rejection('', purchasesHeader)).toEqual([expect.stringMatching(/^user_credits\.csv: empty file/)]);
    expect(rejection(goodUsers, '')).toEqual([expect.stringMatching(/^user_credit_purchases\.csv: empty file/)]);
    expect(rejection(goodUsers, `${purchasesHeader}\n"p1,u1,10`)).toEqual([
      expect.stringMatching(/^user_credit_purchases\.csv: line 2: unterminated quoted field/),
    ]);
  });

  it('line numbers are physical lines: after a quoted line break, in CRLF files', () => {
    const users = [usersHeader, '"u1",10,0,0,"two\r\nlines",,', userRow({ user_id: 'u2', current_balance: 'x' })].join('\r\n');
    expect(rejection(users, purchasesHeader)).toEqual([expect.stringMatching(/^user_credits\.csv line 4, current_balance: /)]);
  });

  it('every bad row of both files is reported at once, and nothing is returned', () => {
    const users = [usersHeader];
    const bad: number[] = [];
    for (let i = 0; i < 200; i += 1) {
      const broken = i % 37 === 5;
      users.push(userRow({ user_id: `u${i}`, current_balance: broken ? '-1' : String(i) }));
      if (broken) bad.push(users.length);
    }
    const purchases = [purchasesHeader, purchaseRow({ id: 'p1', user_id: 'u1', credits: '0' })];
    const problems = rejection(users.join('\n'), purchases.join('\n'));
    expect(problems).toEqual([
      ...bad.map((line) => expect.stringMatching(new RegExp(`^user_credits\\.csv line ${line}, current_balance: `))),
      expect.stringMatching(/^user_credit_purchases\.csv line 2, credits: /),
    ]);
  });
});

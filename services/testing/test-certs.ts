import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Certificates made for one test run with the openssl CLI: a server CA and a server
 * certificate for 127.0.0.1/localhost, a client CA and a client certificate (mTLS), and an
 * unrelated CA (a client trusting it must not connect). Files in a temporary directory.
 */
export interface TestCerts {
  dir: string;
  file(name: 'server-ca.pem' | 'server.pem' | 'server.key' | 'client-ca.pem' | 'client.pem' | 'client.key' | 'other-ca.pem'): string;
  pem(name: Parameters<TestCerts['file']>[0]): Buffer;
  remove(): void;
}

export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(path.join(tmpdir(), 'certs-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ca = (name: string) =>
    run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '3650', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.pem`);
  const leaf = (name: string, caName: string, ext: string) => {
    run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    writeFileSync(path.join(dir, `${name}.ext`), ext);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', '3650',
      '-extfile', `${name}.ext`, '-out', `${name}.pem`);
  };
  ca('server-ca');
  ca('client-ca');
  ca('other-ca');
  leaf('server', 'server-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'client-ca', 'extendedKeyUsage=clientAuth\n');
  const file = (name: string) => path.join(dir, name);
  return { dir, file, pem: (name) => readFileSync(file(name)), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

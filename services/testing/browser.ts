import { chromium, type Browser } from 'playwright-core';

/**
 * The headless Chromium the page tests drive: Debian's package (what `.ci/run` installs), not a
 * browser playwright downloads, since nothing outside the npm registry and Debian's packages can
 * be installed here. No sandbox, because the tests may run as root in CI.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

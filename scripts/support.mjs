// What the scripts and the browser tests (tests/web) share: Debian's Chromium, launched
// headless through playwright-core, and the median of a run's timings.

// Debian's Chromium (never a downloaded browser); the environment's CHROMIUM names another.
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Headless Chromium, quiet (no first-run, sync or update traffic); webgpu: with WebGPU on
// (Chromium's flag for platforms where it is not yet on by default, e.g. Linux).
// playwright-core is imported here, so scripts without a browser do not need it.
export async function launchChromium({ webgpu = false } = {}) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', ...(webgpu ? ['--enable-unsafe-webgpu'] : []), '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

// The middle value (the upper one of an even count), leaving `xs` as it was.
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

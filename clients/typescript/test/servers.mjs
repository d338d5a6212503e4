// The real servers the suites run against: tests/api/typescript.rs starts one per crypto
// backend and passes their URLs as SERVER_URLS="name=url,…"; without it the server
// tests are skipped (run them with `cargo nextest run --test api typescript`).
export const servers = (process.env.SERVER_URLS ?? '')
  .split(',')
  .filter(Boolean)
  .map((pair) => pair.split('='));
export const skip = servers.length === 0 && 'SERVER_URLS not set (tests/api/typescript.rs starts the servers)';
export const [, baseUrl] = servers[0] ?? ['', ''];

// A Node client of the orders service behind the gateway, with the TypeScript library
// (build it once: npm ci --prefix clients/typescript && npm run build --prefix clients/typescript).
//
//   node examples/gateway/client.mjs [http://127.0.0.1:3000]
import { SessionCrypto } from '../../clients/typescript/dist/index.js';

const baseUrl = process.argv[2] ?? 'http://127.0.0.1:3000';
const s = await SessionCrypto.connect({ baseUrl, clientId: 'shop-web' });

const created = await s.fetch('/api/orders', { method: 'POST', body: { item: 'book', qty: 2 } });
console.log(created.status, await created.json());            // 201 { id: '1', item: 'book', ... }

const list = await s.fetch('/api/orders', { method: 'GET' });
console.log(list.status, await list.json());                  // 200 [ { id: '1', ... } ]

const missing = await s.fetch('/api/orders/999', { method: 'GET' });
console.log(missing.status, await missing.json());            // 404 { error: 'no such order' }

const gone = await s.fetch(`/api/orders/${(await created.json()).id}`, { method: 'DELETE' });
console.log(gone.status);                                     // 204

// Echelon from Node.js with @grpc/grpc-js and @grpc/proto-loader, loading
// proto/echelon/v1/gateway.proto at run time.
//
//   node tools/clients/node/client.mjs [address] [target] [proto_root]
//
// Exits non-zero when a call fails or its answer is malformed.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const address = process.argv[2] ?? '127.0.0.1:50051';
const target = process.argv[3] ?? 'fast-pool';
const protoRoot = process.argv[4] ?? path.join(here, '..', '..', '..', 'proto');

const definition = protoLoader.loadSync('echelon/v1/gateway.proto', {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { Gateway } = grpc.loadPackageDefinition(definition).echelon.v1;
const client = new Gateway(address, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 30_000);

function fail(message) {
  console.error(`node client: ${message}`);
  process.exit(1);
}

const request = {
  target,
  messages: [{ role: 'ROLE_USER', content: 'Hello from Node.js' }],
  metadata: { client: 'node' },
};

const execute = (req) =>
  new Promise((resolve, reject) =>
    client.Execute(req, { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res))));

const response = await execute(request);
console.log(`Execute: ${JSON.stringify(response.message.content)} from ${response.instance} ` +
  `(${response.usage.total_tokens} tokens, ${response.attempts.length} attempt(s))`);
if (!response.message.content || !response.instance) fail('Execute returned no content');

const pieces = [];
let summary = null;
await new Promise((resolve, reject) => {
  const call = client.Stream(request, { deadline: deadline() });
  call.on('data', (chunk) => {
    if (chunk.chunk === 'content_delta') pieces.push(chunk.content_delta);
    if (chunk.chunk === 'summary') summary = chunk.summary;
  });
  call.on('error', reject);
  call.on('end', resolve);
});
console.log(`Stream: ${pieces.length} chunks, ${JSON.stringify(pieces.join(''))}`);
if (!summary || pieces.join('') !== response.message.content) fail('Stream did not match Execute');

const status = await new Promise((resolve, reject) =>
  client.GetPoolStatus({}, { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res))));
for (const pool of status.pools) {
  console.log(`Pool ${pool.name} [${pool.strategy}]: ` +
    pool.instances.map((i) => `${i.id}=${i.state}`).join(', '));
}
if (status.pools.length === 0) fail('GetPoolStatus returned no pools');

try {
  await execute({ ...request, target: 'no-such-target' });
  fail('unknown target did not fail');
} catch (err) {
  if (err.code !== grpc.status.NOT_FOUND) fail(`unknown target gave ${err.code}`);
  console.log(`Unknown target: NOT_FOUND (${err.details})`);
}
client.close();
console.log('node client: OK');

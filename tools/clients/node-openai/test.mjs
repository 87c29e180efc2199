// Drives Echelon's OpenAI-compatible front with the official `openai` SDK.
//
//   node test.mjs <baseURL> [simURL]
//
// baseURL: the front, e.g. http://127.0.0.1:8080/v1. simURL (optional): the
// upstream simulator's root, e.g. http://127.0.0.1:8700; with it the script
// also makes the simulator rate-limit one model and checks that the SDK
// raises RateLimitError. Targets come from configs/llms: `fast` (task
// group), `fast-pool` (pool), `sim-fast` (model). Exits non-zero on the first
// failed check.
import assert from 'node:assert/strict';
import OpenAI, { NotFoundError, RateLimitError } from 'openai';

const [baseURL, simURL] = process.argv.slice(2);
if (!baseURL) {
  console.error('usage: node test.mjs <baseURL> [simURL]');
  process.exit(2);
}

// maxRetries 0: the SDK must see each error as the gateway sent it.
const client = new OpenAI({ baseURL, apiKey: 'not-needed', maxRetries: 0, timeout: 30000 });

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};

const checks = [];
function check(name, fn) {
  checks.push([name, fn]);
}

check('models.list shows the configured targets', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  for (const want of ['fast', 'fast-pool', 'sim-fast']) {
    assert.ok(ids.includes(want), `${want} missing from ${ids.join(',')}`);
  }
});

check('non-streamed completion', async () => {
  for (const model of ['fast', 'fast-pool', 'sim-fast']) {
    const r = await client.chat.completions.create({
      model,
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'say something' },
      ],
      max_tokens: 64,
      temperature: 0.1,
    });
    assert.equal(r.object, 'chat.completion');
    assert.ok(r.id.startsWith('chatcmpl-'), r.id);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.match(r.choices[0].message.content, /^tok1 tok2/);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.completion_tokens > 0, JSON.stringify(r.usage));
  }
});

check('streamed completion with usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'fast',
    messages: [{ role: 'user', content: 'stream please' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let role = null;
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.match(text, /^tok1 tok2 tok3/);
  assert.equal(finish, 'stop');
  assert.ok(usage && usage.total_tokens > 0, `usage: ${JSON.stringify(usage)}`);
  assert.ok(chunks >= 4, `only ${chunks} chunks`);
});

check('stream helper (runTools-style accumulation) gives the final message', async () => {
  const stream = client.chat.completions.stream({
    model: 'fast-pool',
    messages: [{ role: 'user', content: 'hello' }],
  });
  const final = await stream.finalChatCompletion();
  assert.match(final.choices[0].message.content, /^tok1/);
});

check('tool call, non-streamed', async () => {
  const r = await client.chat.completions.create({
    model: 'fast',
    messages: [{ role: 'user', content: 'CALL_TOOL what is the weather?' }],
    tools: [weatherTool],
    tool_choice: 'auto',
  });
  const msg = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.tool_calls.length, 1);
  assert.equal(msg.tool_calls[0].type, 'function');
  assert.equal(msg.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: 'Paris' });

  // Send the tool result back: a full tool round trip.
  const r2 = await client.chat.completions.create({
    model: 'fast',
    messages: [
      { role: 'user', content: 'what is the weather?' },
      msg,
      { role: 'tool', tool_call_id: msg.tool_calls[0].id, content: '{"temp_c":21}' },
    ],
    tools: [weatherTool],
  });
  assert.equal(r2.choices[0].finish_reason, 'stop');
  assert.match(r2.choices[0].message.content, /^tok1/);
});

check('tool call, streamed', async () => {
  const stream = await client.chat.completions.create({
    model: 'fast',
    messages: [{ role: 'user', content: 'CALL_TOOL weather in Paris' }],
    tools: [weatherTool],
    stream: true,
  });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      for (const tc of c.delta.tool_calls ?? []) {
        const slot = (calls[tc.index] ??= { id: '', name: '', args: '' });
        if (tc.id) slot.id = tc.id;
        if (tc.function?.name) slot.name = tc.function.name;
        if (tc.function?.arguments) slot.args += tc.function.arguments;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(calls.length, 1);
  assert.ok(calls[0].id, 'tool call id missing');
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].args), { city: 'Paris' });
});

check('unknown model is NotFoundError', async () => {
  await assert.rejects(
    client.chat.completions.create({
      model: 'no-such-target',
      messages: [{ role: 'user', content: 'hi' }],
    }),
    (e) => {
      assert.ok(e instanceof NotFoundError, `got ${e?.constructor?.name}: ${e}`);
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    },
  );
});

if (simURL) {
  check('rate-limited upstream is RateLimitError', async () => {
    const set = (body) =>
      fetch(`${simURL}/_scenario?key=sim-smart`, { method: 'POST', body }).then((r) => {
        assert.ok(r.ok, `simulator override: HTTP ${r.status}`);
      });
    await set('fault=rate_limit;retry_after=2');
    try {
      await assert.rejects(
        client.chat.completions.create({
          model: 'sim-smart',
          messages: [{ role: 'user', content: 'hi' }],
        }),
        (e) => {
          assert.ok(e instanceof RateLimitError, `got ${e?.constructor?.name}: ${e}`);
          assert.equal(e.status, 429);
          assert.ok(Number(e.headers?.get?.('retry-after')) >= 1, 'Retry-After missing');
          return true;
        },
      );
    } finally {
      await set('');
    }
  });
} else {
  console.log('SKIP rate-limit check (no simulator URL given)');
}

let failed = 0;
for (const [name, fn] of checks) {
  try {
    await fn();
    console.log(`PASS ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n  ${e?.stack ?? e}`);
  }
}
console.log(failed ? `${failed} of ${checks.length} checks failed` : `all ${checks.length} checks passed`);
process.exit(failed ? 1 : 0);

// sdk.cjs — drives a running edgellmd with the official openai npm SDK (tests/js/node_modules):
// chat and completions, streamed and not, include_usage, models, and the SDK's typed errors for
// 400 / 401 / 404. Usage: node tests/server/sdk.cjs URL API_KEY MODEL. Exit status 0 = passed.
'use strict';

const path = require('path');
const { createRequire } = require('module');
const requireJs = createRequire(path.join(__dirname, '..', 'js', 'package.json'));
const OpenAI = requireJs('openai');

const [url, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: url + '/v1', apiKey, maxRetries: 0, timeout: 120000 });
const noEos = { 2: -100 };

function check(cond, msg) {
    if (!cond) throw new Error('check failed: ' + msg);
}

async function expectError(cls, status, fn, what) {
    try {
        await fn();
    } catch (e) {
        check(e instanceof cls, `${what}: ${e && e.constructor && e.constructor.name} is not ${cls.name}: ${e}`);
        check(e.status === status, `${what}: status ${e.status}`);
        check(typeof e.message === 'string' && e.error && e.error.message, `${what}: error body`);
        return e;
    }
    throw new Error(`${what}: no error`);
}

async function main() {
    const messages = [{ role: 'user', content: 'Hello!' }];

    // Chat, not streamed.
    const chat = await client.chat.completions.create({
        model, messages, max_tokens: 6, temperature: 0, logit_bias: noEos,
    });
    check(chat.object === 'chat.completion' && chat.id.startsWith('chatcmpl-'), 'chat object');
    check(chat.choices.length === 1 && chat.choices[0].message.role === 'assistant', 'chat choice');
    check(chat.choices[0].finish_reason === 'length', 'chat finish_reason');
    check(chat.usage.completion_tokens === 6, 'chat usage');

    // Chat, streamed with include_usage; same text as the non-streamed greedy answer.
    const stream = await client.chat.completions.create({
        model, messages, max_tokens: 6, temperature: 0, logit_bias: noEos, stream: true,
        stream_options: { include_usage: true },
    });
    let text = '';
    let usage = null;
    let finish = null;
    let role = null;
    for await (const chunk of stream) {
        check(chunk.object === 'chat.completion.chunk', 'chunk object');
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices) {
            if (c.delta.role) role = c.delta.role;
            if (c.delta.content) text += c.delta.content;
            if (c.finish_reason) finish = c.finish_reason;
        }
    }
    check(role === 'assistant' && finish === 'length', 'stream role/finish');
    check(usage && usage.completion_tokens === 6, 'stream usage');
    check(text === chat.choices[0].message.content, `stream text ${JSON.stringify(text)}`);

    // The SDK's stream helper accumulates the same message.
    const runner = client.chat.completions.stream({
        model, messages, max_tokens: 6, temperature: 0, logit_bias: noEos,
    });
    const final = await runner.finalChatCompletion();
    check(final.choices[0].message.content === chat.choices[0].message.content, 'stream helper');

    // Completions, both ways.
    const comp = await client.completions.create({
        model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, logit_bias: noEos,
    });
    check(comp.object === 'text_completion' && comp.choices[0].text.length > 0, 'completion');
    check(comp.usage.completion_tokens === 5, 'completion usage');
    const cstream = await client.completions.create({
        model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, logit_bias: noEos,
        stream: true, stream_options: { include_usage: true },
    });
    let ctext = '';
    let cusage = null;
    for await (const chunk of cstream) {
        if (chunk.usage) cusage = chunk.usage;
        for (const c of chunk.choices) ctext += c.text;
    }
    check(ctext === comp.choices[0].text, 'completion stream text');
    check(cusage && cusage.completion_tokens === 5, 'completion stream usage');

    // Models.
    const list = await client.models.list();
    const ids = [];
    for await (const m of list) ids.push(m.id);
    check(ids.length === 1 && ids[0] === model, 'models.list');
    const m = await client.models.retrieve(model);
    check(m.id === model && m.object === 'model', 'models.retrieve');

    // Typed errors.
    const e400 = await expectError(OpenAI.BadRequestError, 400, () =>
        client.chat.completions.create({ model, messages, temperature: 7 }), '400');
    check(e400.param === 'temperature' && e400.type === 'invalid_request_error', '400 fields');
    const bad = new OpenAI({ baseURL: url + '/v1', apiKey: 'wrong', maxRetries: 0 });
    const e401 = await expectError(OpenAI.AuthenticationError, 401, () => bad.models.list(), '401');
    check(e401.code === 'invalid_api_key', '401 code');
    const e404 = await expectError(OpenAI.NotFoundError, 404, () =>
        client.chat.completions.create({ model: 'no-such-model', messages }), '404');
    check(e404.code === 'model_not_found', '404 code');
    await expectError(OpenAI.NotFoundError, 404, () => client.models.retrieve('nope'), '404 model');
    console.log('openai sdk: all checks passed');
}

main().catch((e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
});

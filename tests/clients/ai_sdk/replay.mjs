// Two turns through the AI SDK's OpenAI provider (the Responses API, store on, its defaults): the second
// sends the first turn's messages back as the SDK does. Prints the request bodies it sent and the answers.
import { createOpenAI } from '@ai-sdk/openai';
import { generateText } from 'ai';

const bodies = [];
const openai = createOpenAI({
  baseURL: process.env.PARLEY_BASE_URL,
  apiKey: 'parley-test',
  fetch: async (url, init) => {
    bodies.push(JSON.parse(init.body));
    return fetch(url, init);
  },
});
const model = openai.responses('m');
const first = await generateText({ model, prompt: 'Which planet?' });
const messages = [{ role: 'user', content: 'Which planet?' }, ...first.response.messages,
                  { role: 'user', content: 'Sure?' }];
const second = await generateText({ model, messages });
console.log(JSON.stringify({ bodies, first: first.text, second: second.text }));

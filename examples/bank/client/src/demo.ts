// A walk through the bank with the client generated from openapi/bank.json:
// every request, answer and error below is typed by `src/schema.d.ts`.
//
//   BANK_URL=http://127.0.0.1:3000 npx tsx src/demo.ts
//
// Each step prints one line; any mismatch throws, and the script exits 1.
import createClient from "openapi-fetch";
import WebSocket from "ws";
import type { components, paths } from "./schema.js";

type AccountEvent = components["schemas"]["AccountEvent"];
type Problem = components["schemas"]["Problem"];
type WsQuery = NonNullable<paths["/events/ws"]["get"]["parameters"]["query"]>;

const baseUrl = (process.env.BANK_URL ?? "http://127.0.0.1:3000").replace(/\/+$/, "");
const client = createClient<paths>({ baseUrl });

function check(ok: boolean, what: string): asserts ok {
    if (!ok) throw new Error(`mismatch: ${what}`);
}

/** The answer's data, or a thrown error naming the operation and the problem. */
function expectData<T>(step: string, answer: { data?: T; error?: unknown; response: Response }): T {
    if (answer.data === undefined) {
        throw new Error(`${step}: HTTP ${answer.response.status} ${JSON.stringify(answer.error)}`);
    }
    return answer.data;
}

// 1. Open an account: the server picks its id.
const opened = expectData(
    "open-account",
    await client.POST("/commands/open-account", {
        body: { owner: "Ada Lovelace", email: "ada@example.com", currency: "EUR" },
    }),
);
const accountId = opened.aggregate_id;
check(opened.position !== null, "open-account recorded no event");
check(opened.events[0]?.type === "AccountOpened", `first event ${opened.events[0]?.type}`);
console.log(`opened ${accountId} (stream ${opened.stream_id}, position ${opened.position})`);
const beforeDeposit = opened.position;

// 2. Deposit into it; the answer carries the global position of its event.
const amount = 2_500;
const deposited = expectData(
    "deposit",
    await client.POST("/commands/deposit", { body: { account_id: accountId, amount } }),
);
check(deposited.position !== null, "deposit recorded no event");
const depositPosition = deposited.position;
check(depositPosition > beforeDeposit, `deposit position ${depositPosition} <= ${beforeDeposit}`);
console.log(`deposited ${amount} cents at position ${depositPosition} (version ${deposited.version})`);

// 3. Read the row, waiting for the projection to reflect the deposit.
const row = expectData(
    "get-accounts",
    await client.GET("/projections/accounts/{account_id}", {
        params: { path: { account_id: accountId }, query: { min_position: depositPosition } },
    }),
);
check(row.account_id === accountId, `row for ${row.account_id}`);
check(row.balance === amount, `balance ${row.balance}, expected ${amount}`);
check(row.open, "account is not open");
console.log(`read balance ${row.balance} ${row.currency ?? ""} for ${row.owner} at min_position ${depositPosition}`);

// 4. The typed error path: withdrawing more than the balance is refused with
//    a 422 application/problem+json, which openapi-fetch hands back as `error`.
const refused = await client.POST("/commands/withdraw", {
    body: { account_id: accountId, amount: amount + 1 },
});
check(refused.data === undefined, "an overdraft was accepted");
check(refused.response.status === 422, `withdraw answered ${refused.response.status}`);
const problem: Problem = refused.error;
check(problem.type === "/problems/insufficient-funds", `problem type ${problem.type}`);
check(problem.status === 422, `problem status ${problem.status}`);
console.log(`withdraw ${amount + 1} refused: ${refused.response.status} ${problem.type} "${problem.title}"`);

// 5. Follow the account's stream over the WebSocket from the position before
//    the deposit: the first frame must be the deposit.
const query: WsQuery = { after: beforeDeposit, stream: deposited.stream_id };
const wsUrl = new URL("/events/ws", baseUrl.replace(/^http/, "ws"));
for (const [name, value] of Object.entries(query)) wsUrl.searchParams.set(name, String(value));
const event = await new Promise<AccountEvent>((resolve, reject) => {
    const socket = new WebSocket(wsUrl);
    const timer = setTimeout(() => {
        socket.terminate();
        reject(new Error(`no event on ${wsUrl} within 10 s`));
    }, 10_000);
    socket.once("message", (frame, isBinary) => {
        clearTimeout(timer);
        socket.close(1000);
        if (isBinary) return reject(new Error("binary frame; expected a JSON text frame"));
        // The document types the frames only in the `x-message` extension of
        // the 101 response, which generators ignore: name the type here.
        resolve(JSON.parse(frame.toString()) as AccountEvent);
    });
    socket.once("unexpected-response", (_request, response) => {
        clearTimeout(timer);
        reject(new Error(`${wsUrl} answered HTTP ${response.statusCode}`));
    });
    socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
    });
});
check(event.type === "MoneyDeposited", `first event ${event.type}`);
check(event.position === depositPosition, `event position ${event.position}, expected ${depositPosition}`);
check(event.stream_id === deposited.stream_id, `event stream ${event.stream_id}`);
// `check` narrowed `event` to the MoneyDeposited variant: `data.amount` is a number.
check(event.data.amount === amount, `event amount ${event.data.amount}`);
console.log(`ws ${wsUrl.pathname}${wsUrl.search}: ${event.type} ${event.data.amount} at position ${event.position}`);

console.log("client demo OK");

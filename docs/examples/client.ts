import { Cordon, CordonError } from "cordon/client";

export async function example(cordon: Cordon) {
  // Run a function with an input.
  const sum = await cordon.execute.code({
    runtime: "edge",
    code: "export default async function (input) { console.log('adding'); return input.a + input.b }",
    input: { a: 2, b: 3 },
  });
  console.log(sum.output, sum.logs); // 5 [{ level: "log", message: "adding", … }]

  // A failing job throws a CordonError that still carries the execution's id, logs and metrics.
  try {
    await cordon.execute.code({ runtime: "edge", code: "export default async () => { for (;;) {} }", timeout: 300 });
  } catch (error) {
    if (!(error instanceof CordonError)) throw error;
    console.log(error.code, error.status, error.executionId); // SANDBOX_TIMEOUT 408 exec_…
    return { sum: sum.output, failure: error.code, stored: await cordon.executions.get(error.executionId ?? "") };
  }
  throw new Error("the loop should have timed out");
}

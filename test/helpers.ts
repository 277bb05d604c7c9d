import { exports } from "cloudflare:workers";

export interface ApiResponse {
  status: number;
  body: Record<string, unknown> & {
    id?: string;
    status?: string;
    success?: boolean;
    output?: unknown;
    logs?: { level: string; message: string; timestamp: number }[];
    logsTruncated?: boolean;
    metrics?: Record<string, unknown>;
    error?: { code: string; message: string; [key: string]: unknown };
    tests?: { cases: { passed: boolean; actual?: unknown; error?: { message: string } }[]; allTestsPassed: boolean };
  };
}

/** Sends a request through the dispatcher's real fetch handler (routing, validation, runner, D1). */
export async function call(path: string, init?: RequestInit): Promise<ApiResponse> {
  const response = await exports.default.fetch(new Request(`https://cordon.test${path}`, init));
  return { status: response.status, body: (await response.json()) as ApiResponse["body"] };
}

export function execute(job: Record<string, unknown>): Promise<ApiResponse> {
  return call("/v1/executions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ runtime: "edge", ...job }),
  });
}

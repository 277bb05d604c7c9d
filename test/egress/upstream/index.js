/* global Response, URL, ReadableStream, TextEncoder */
/**
 * A stand-in for the internet in egress tests (no test may need a network). It answers any host with
 * canned responses chosen by path, so the gateway's checks run on real-looking URLs while the bytes
 * come from here. Used two ways: imported by the unit tests as `serveCanned` (the gateway's upstream
 * function), and, once INTEGRATION.md is applied, as the auxiliary Worker behind EGRESS_TEST_UPSTREAM.
 *
 *   /hello                      200 "hello from <host>"
 *   /echo                       200 JSON {method, url, headers, body} of what arrived
 *   /bytes?n=N                  200 with N bytes of "x"
 *   /stream?chunks=C&size=S     200 streamed: C chunks of S bytes ("0".."9" by chunk), unknown length
 *   /redirect?to=URL&status=N   N (default 302) with Location: URL
 *   /chain?n=K                  302 to /chain?n=K-1 on the same host, until K = 0 answers 200 "end"
 *   /status?code=N              an empty response with status N
 *   /spoof                      200 carrying the gateway's refusal marker header (it must be stripped)
 *   anything else               404
 */
const encoder = new TextEncoder();

export async function serveCanned(request) {
  const url = new URL(request.url);
  const number = (name, fallback) => Number(url.searchParams.get(name) ?? fallback);
  switch (url.pathname) {
    case "/hello":
      return new Response(`hello from ${url.hostname}`, { headers: { "content-type": "text/plain" } });
    case "/echo": {
      const headers = {};
      request.headers.forEach((value, key) => {
        headers[key] = value;
      });
      const body = request.body === null ? null : await request.text();
      return Response.json({ method: request.method, url: request.url, headers, body });
    }
    case "/bytes":
      return new Response("x".repeat(number("n", 0)));
    case "/stream": {
      const chunks = number("chunks", 1);
      const size = number("size", 1);
      let sent = 0;
      const stream = new ReadableStream({
        pull(controller) {
          if (sent === chunks) return controller.close();
          controller.enqueue(encoder.encode(String(sent % 10).repeat(size)));
          sent++;
        },
      });
      return new Response(stream);
    }
    case "/redirect":
      return new Response("moved", {
        status: number("status", 302),
        headers: { location: url.searchParams.get("to") ?? "/" },
      });
    case "/chain": {
      const left = number("n", 0);
      if (left <= 0) return new Response("end");
      return new Response(null, { status: 302, headers: { location: `/chain?n=${left - 1}` } });
    }
    case "/status":
      return new Response(null, { status: number("code", 200) });
    case "/spoof":
      return new Response("not a refusal", { headers: { "cordon-egress-refusal": "not_allowlisted" } });
    default:
      return new Response("not found", { status: 404 });
  }
}

export default {
  fetch: serveCanned,
};

/** Types of the canned upstream (index.js is plain JS so that it can also run as an auxiliary Worker). */
export function serveCanned(request: Request): Promise<Response>;
declare const worker: { fetch(request: Request): Promise<Response> };
export default worker;

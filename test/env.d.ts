declare namespace Cloudflare {
  interface Env {
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
  }
}

declare module "*.md?raw" {
  const text: string;
  export default text;
}

declare namespace Cloudflare {
  interface Env {
    EXAMPLE_CLIENT: Fetcher;
  }
}

declare module "*.ts?raw" {
  const text: string;
  export default text;
}

declare module "*.js?raw" {
  const text: string;
  export default text;
}

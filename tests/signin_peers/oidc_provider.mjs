// A real OpenID Connect provider (the certified `oidc-provider` package) on loopback, for the
// sign-in tests. It listens on an ephemeral port, then prints one JSON line
// {"issuer": "..."} on stdout. Its own development login and consent pages stay on: the tests
// drive them over HTTP like a browser would. Any login name signs in as that account
// (the provider's dev login), except that the password "wrong" is refused.
//
// Clients:
//   hostnet-desktop  public native client: authorization code + PKCE, device flow, refresh
//   hostnet-short    the same, but its ID and access tokens live 2 seconds (expiry tests)
import http from 'node:http';
import Provider from 'oidc-provider';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const native = (clientId) => ({
  client_id: clientId,
  client_name: `hostnet test (${clientId})`,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  redirect_uris: ['http://127.0.0.1/callback'],
  grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
});

const short = (ctx, token, client) => (client && client.clientId === 'hostnet-short' ? 2 : undefined);

const provider = new Provider(issuer, {
  clients: [native('hostnet-desktop'), native('hostnet-short')],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
  },
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: (ctx, token, client) => short(ctx, token, client) ?? 3600,
    IdToken: (ctx, token, client) => short(ctx, token, client) ?? 3600,
    RefreshToken: 86400,
    DeviceCode: 30,
    Interaction: 600,
    Session: 3600,
    Grant: 86400,
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: `Test ${id}`, email: `${id}@example.test`, email_verified: true };
      },
    };
  },
});

// The development login accepts any password; refuse "wrong" so a bad password is testable.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /\/interaction\/[^/]+\/login$/.test(ctx.path)) {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const form = new URLSearchParams(body.toString());
    if (form.get('password') === 'wrong') {
      ctx.status = 401;
      ctx.body = 'invalid password';
      return;
    }
    const { Readable } = await import('node:stream');
    const replay = Readable.from([body]);
    replay.headers = ctx.req.headers;
    Object.assign(replay, { method: ctx.req.method, url: ctx.req.url });
    ctx.req = replay;
  }
  await next();
});

// The provider names no polling interval, so clients default to 5 s (RFC 8628); advertise 1 s
// to keep the device-flow tests short.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
    ctx.body = { ...ctx.body, interval: 1 };
  }
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));
server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));

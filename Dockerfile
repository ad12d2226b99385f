# syntax=docker/dockerfile:1
# flux-ts: the HTTP server (and `worker`, `generate`, ...) with the native CPU backend built in.
#   docker build -t flux-ts .
#   docker run -p 8080:8080 -e FLUX_API_TOKENS=secret -v hf-cache:/home/node/.cache/huggingface flux-ts \
#     serve --host 0.0.0.0 --model black-forest-labs/FLUX.1-schnell
# compose.yaml runs a server, N workers and Redis.

# --- build: the same steps CI runs (scripts/package.sh install): tsc, pnpm pack, npm install of the tarballs into
# /app, then `flux-ts setup-native` there (TensorFlow's C library from the tensorflow-cpu wheel, tfjs-node's addon).
FROM node:24-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip g++ make \
 && rm -rf /var/lib/apt/lists/*
RUN npm install -g pnpm@10.34.8
WORKDIR /src
COPY . .
RUN pnpm install --frozen-lockfile \
 && FLUX_NATIVE_CACHE=/tmp/native bash scripts/package.sh install /app \
 && rm -rf /app/.tarballs /tmp/native

# --- runtime: Node and the installed packages; no compiler, no Python, no sources; not root.
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HF_HOME=/home/node/.cache/huggingface
COPY --from=build --chown=node:node /app /app
USER node
RUN mkdir -p /home/node/.cache/huggingface
WORKDIR /app
# The Hugging Face cache: `flux-ts download` writes the weights here; mount it so they survive the container.
VOLUME ["/home/node/.cache/huggingface"]
EXPOSE 8080
# Node itself is PID 1 and gets the signals: the first SIGTERM drains (jobs finish, webhooks go out), a second exits.
ENTRYPOINT ["node", "/app/node_modules/@flux-ts/cli/dist/main.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]

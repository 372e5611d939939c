FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

FROM node:20-slim AS runtime
WORKDIR /app
COPY --from=runtime /app/node_modules ./node_modules
COPY --from=deps /app/node_modules ./node_modules
COPY . .
EXPOSE 80800
EXPOSE 3000/tcp
USER node
CMD ["node", "server.js"]

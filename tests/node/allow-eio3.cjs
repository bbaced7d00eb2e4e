// Preloaded (`node -r ./allow-eio3.cjs server.js`) into the seed reference
// server so that Socket.IO 2.x clients (Engine.IO 3) can reach it, as they
// reached the seed's original socket.io 2 server. It adds `allowEIO3: true`
// to the options the server passes to socket.io and changes nothing else.
'use strict';
const Module = require('module');
const load = Module.prototype.require;
Module.prototype.require = function require(id) {
  const exported = load.apply(this, arguments);
  if (id !== 'socket.io') return exported;
  const withEio3 = (server, options) => exported(server, { ...options, allowEIO3: true });
  return Object.assign(withEio3, exported);
};

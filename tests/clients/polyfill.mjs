// matrix-js-sdk 43 wants node 22; Debian 12 ships node 20, which lacks
// Promise.withResolvers.  This is the whole difference the SDK needs.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}

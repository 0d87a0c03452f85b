// The platform's floor for the JSON publish paths (bench/wrk.mjs): a minimal node:http server that
// reads the request body and answers 201 with a small JSON body, nothing else. Whatever the
// service does per request beyond this is its own cost. Prints its port on stdout.
import http from 'node:http';

const reply = Buffer.from('{"id":"0"}');
const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(201, { 'content-type': 'application/json', 'content-length': reply.length });
    res.end(reply);
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));

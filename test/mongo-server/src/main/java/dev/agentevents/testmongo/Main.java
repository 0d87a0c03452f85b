package dev.agentevents.testmongo;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.net.InetSocketAddress;
import java.util.List;

/**
 * Starts an in-memory MongoDB wire-protocol server on 127.0.0.1 (port from argv[0], default: any
 * free port), prints "LISTENING 127.0.0.1:PORT", and exits when its standard input closes, so it
 * never outlives the test process that started it.
 */
public final class Main {
  /**
   * MongoDB 5.0 with its real wire version (13). The server's own MONGO_5_0 constant reports wire
   * version 8, which the Node.js driver 7 refuses (it needs 9+, MongoDB 4.4).
   */
  private static final MongoVersion MONGO_5_0 =
      new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
          return List.of(5, 0, 0);
        }

        @Override
        public int getWireVersion() {
          return 13;
        }
      };

  public static void main(String[] args) throws Exception {
    int port = args.length > 0 ? Integer.parseInt(args[0]) : 0;
    MemoryBackend backend = new MemoryBackend();
    backend.version(MONGO_5_0);
    backend.enableOplog();
    MongoServer server = new MongoServer(backend);
    try {
      server.bind(new InetSocketAddress("127.0.0.1", port));
    } catch (Exception e) {
      // E.g. a BindException (rethrown undeclared by Netty): exit, as Netty's non-daemon threads
      // would otherwise keep the JVM alive.
      System.err.println("cannot listen on 127.0.0.1:" + port + ": " + e);
      System.exit(1);
    }
    Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow));
    InetSocketAddress address = server.getLocalAddress();
    System.out.println("LISTENING 127.0.0.1:" + address.getPort());
    System.out.flush();
    while (System.in.read() != -1) {
      // Wait for EOF on stdin.
    }
    System.exit(0);
  }
}

package dev.agentevents.testmongo;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;
import io.netty.channel.Channel;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Starts an in-memory MongoDB wire-protocol server on 127.0.0.1 (port from argv[0], default: any
 * free port), prints "LISTENING 127.0.0.1:PORT", and exits when its standard input closes, so it
 * never outlives the test process that started it.
 *
 * <p>Made faithful where the service's design relies on MongoDB's semantics: mongo-java-server
 * runs commands of different connections concurrently, and neither its findAndModify ($inc on the
 * counter) nor its unique-index check-then-insert is atomic under concurrency (50 concurrent $inc
 * gave 47 distinct values). MongoDB guarantees both (a single-document update is atomic; a unique
 * index admits one document per key). So every write command runs under one lock here: that gives
 * the atomicity MongoDB documents, nothing more. Reads stay concurrent.
 *
 * <p>A change stream's getMore waits, as MongoDB's does for a tailable awaitData cursor: up to its
 * maxTimeMS (the driver's maxAwaitTimeMS) for a write, instead of answering an empty batch at
 * once (mongo-java-server's own behaviour, which makes an idle change stream spin). Command counts
 * measured against this server are then what a real one executes. A waiting getMore holds its
 * network thread, so the server runs many of them (Netty starts each one only when first used).
 *
 * <p>Flag {@code --no-ttl}: refuse TTL indexes (createIndexes with expireAfterSeconds) with error
 * 238 NotImplemented, as FerretDB and some MongoDB-compatible services do.
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

  private static final Set<String> WRITES =
      Set.of("insert", "update", "delete", "findandmodify", "createindexes", "dropindexes", "drop", "dropdatabase");

  /** The backend with serialised writes (and optionally no TTL indexes). */
  static final class FaithfulBackend extends MemoryBackend {
    private final Object writeLock = new Object();
    private final boolean noTtl;
    /** Writes so far; waiting getMores are notified on it. */
    private final Object changes = new Object();
    private long writes;

    FaithfulBackend(boolean noTtl) {
      this.noTtl = noTtl;
    }

    @Override
    public Document handleCommand(Channel channel, String database, String command, Document query) {
      String name = command.toLowerCase(Locale.ROOT);
      if (name.equals("getmore") && query.get("maxTimeMS") instanceof Number max && max.longValue() > 0) {
        return awaitData(channel, database, command, query, max.longValue());
      }
      if (!WRITES.contains(name)) return super.handleCommand(channel, database, command, query);
      if (noTtl && name.equals("createindexes") && query.get("indexes") instanceof List<?> indexes) {
        for (Object index : indexes) {
          if (index instanceof Document d && d.containsKey("expireAfterSeconds")) {
            throw new MongoServerError(238, "NotImplemented", "createIndexes: TTL indexes are not supported (test server started with --no-ttl)");
          }
        }
      }
      try {
        synchronized (writeLock) {
          return super.handleCommand(channel, database, command, query);
        }
      } finally {
        synchronized (changes) {
          writes++;
          changes.notifyAll();
        }
      }
    }

    /** A getMore that answers an empty batch of an open cursor only after maxTimeMS without writes. */
    private Document awaitData(Channel channel, String database, String command, Document query, long maxTimeMs) {
      long deadline = System.nanoTime() + maxTimeMs * 1_000_000L;
      for (;;) {
        long seen;
        synchronized (changes) {
          seen = writes;
        }
        Document reply = super.handleCommand(channel, database, command, query);
        if (!(reply.get("cursor") instanceof Document cursor)
            || !(cursor.get("nextBatch") instanceof List<?> batch)
            || !batch.isEmpty()
            || !(cursor.get("id") instanceof Number id)
            || id.longValue() == 0) {
          return reply;
        }
        synchronized (changes) {
          long left;
          while (writes == seen && (left = deadline - System.nanoTime()) > 0) {
            try {
              changes.wait(Math.max(1, left / 1_000_000L));
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
              return reply;
            }
          }
          if (writes == seen) return reply;
        }
      }
    }
  }

  public static void main(String[] args) throws Exception {
    int port = 0;
    boolean noTtl = false;
    for (String arg : args) {
      if (arg.equals("--no-ttl")) noTtl = true;
      else port = Integer.parseInt(arg);
    }
    MemoryBackend backend = new FaithfulBackend(noTtl);
    backend.version(MONGO_5_0);
    backend.enableOplog();
    MongoServer server = new MongoServer(backend);
    try {
      // One acceptor; up to 512 network threads (see awaitData), started as connections come.
      server.bind(new InetSocketAddress("127.0.0.1", port), 1, 512);
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

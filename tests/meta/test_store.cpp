// meta/sha256.h (against published test vectors) and meta/store.h: where the store listens,
// who it lets in, and what a client without the token, or with it but misbehaving, can do.
// The raw-socket clients below speak the wire format of meta/store.h's header by hand.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#include "meta/distributed.h"
#include "meta/sha256.h"
#include "meta/store.h"
#include "tests/util/raw_socket.h"
#include "tests/util/test_util.h"

namespace qsched::meta {
namespace {

using std::chrono::milliseconds;
using test::closed_within;
using test::recv_exact;
using test::send_all;
using test::tcp_connect;
using Clock = std::chrono::steady_clock;

const std::string kToken = "store-test-token-0123456789";

std::string hex_sha(const std::string& s) { return to_hex(sha256(s)); }

TEST(Sha256, FipsExamples) {
  EXPECT_EQ(hex_sha(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_sha("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex_sha(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Lengths at the padding boundary (55 bytes: one block; 56: two; 64: a full block + one),
  // values from Python's hashlib.
  EXPECT_EQ(hex_sha(std::string(55, 'a')),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(hex_sha(std::string(56, 'a')),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(hex_sha(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(HmacSha256, Rfc4231Vectors) {
  auto hmac = [](const std::string& k, const std::string& m) { return to_hex(hmac_sha256(k, m)); };
  EXPECT_EQ(hmac(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hmac(std::string(20, '\xaa'), std::string(50, '\xdd')),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  EXPECT_EQ(
      hmac(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256, DigestEqualSeesEveryByteAndTokensAreRandom) {
  Digest a = sha256("x");
  EXPECT_TRUE(digest_equal(a, a));
  for (size_t i = 0; i < a.size(); ++i) {
    Digest b = a;
    b[i] ^= 0x01;
    EXPECT_FALSE(digest_equal(a, b)) << i;
  }
  std::string t1 = random_token(), t2 = random_token();
  EXPECT_EQ(t1.size(), 32u);
  EXPECT_EQ(t1.find_first_not_of("0123456789abcdef"), std::string::npos) << t1;
  EXPECT_NE(t1, t2);
}

// ---------------------------------------------------------------------------------------
// Wire helpers (big-endian, as meta/store.h describes)

std::string be32(uint32_t v) {
  std::string s;
  for (int i = 3; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}
std::string be64(int64_t v) {
  std::string s;
  for (int i = 7; i >= 0; --i) s += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
  return s;
}
std::string field(const std::string& b) { return be32(static_cast<uint32_t>(b.size())) + b; }
std::string digest_bytes(const Digest& d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

constexpr char kSet = 1, kAdd = 3;

// Connects and runs the client side of the handshake with `token`; returns the server's
// verdict ('A' accepted, 'R' refused, 0 closed/timeout) and the open socket in *fd.
char handshake(int port, const std::string& token, int* fd) {
  *fd = tcp_connect("127.0.0.1", port);
  if (*fd < 0) return 0;
  std::string hello;
  if (!recv_exact(*fd, 40, 30, &hello) || hello.substr(0, 8) != "QSTORE01") return 0;
  const std::string nonce_c(32, 'n');
  const Digest mac =
      hmac_sha256(token, std::string("qsched store client") + hello.substr(8) + nonce_c);
  if (!send_all(*fd, "QSTORE01" + nonce_c + digest_bytes(mac))) return 0;
  std::string verdict;
  if (!recv_exact(*fd, 1, 30, &verdict)) return 0;
  if (verdict[0] == 'A') {
    std::string proof;
    if (!recv_exact(*fd, 32, 30, &proof)) return 0;
  }
  return verdict[0];
}

int authed(int port) {
  int fd = -1;
  EXPECT_EQ(handshake(port, kToken, &fd), 'A');
  return fd;
}

std::unique_ptr<StoreClient> client(int port, double seconds = 30) {
  return std::make_unique<StoreClient>("127.0.0.1", port, kToken,
                                       milliseconds(static_cast<int64_t>(seconds * 1000)));
}

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

// ---------------------------------------------------------------------------------------

TEST(Store, ListensOnlyOnTheRequestedAddress) {
  StoreServer server("127.0.0.1", 0, kToken);
  const int port = server.port();
  EXPECT_GT(port, 0);
  EXPECT_EQ(server.bound_address(), "127.0.0.1");
  // 127.0.0.2 is this machine too (the whole 127/8 is loopback): a socket bound to every
  // interface (0.0.0.0, as c10d::TCPStore's) would accept there.
  int other = tcp_connect("127.0.0.2", port);
  int err = errno;
  EXPECT_LT(other, 0) << "the store accepted a connection on 127.0.0.2";
  if (other >= 0) close(other);
  EXPECT_EQ(err, ECONNREFUSED);
  int fd = tcp_connect("127.0.0.1", port);
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
}

TEST(Store, BadAddressesAndTakenPortsAreValueErrors) {
  // 192.0.2.1 (TEST-NET-1, RFC 5737) is nobody's address here; nothing is sent to it.
  EXPECT_VALUE_ERROR(StoreServer("192.0.2.1", 0, kToken),
                     "MASTER_ADDR=192.0.2.1 (192.0.2.1) is not an address of this machine");
  StoreServer first("127.0.0.1", 0, kToken);
  EXPECT_VALUE_ERROR(StoreServer("127.0.0.1", first.port(), kToken),
                     "cannot listen on 127.0.0.1:" + std::to_string(first.port()));
  EXPECT_VALUE_ERROR(StoreServer("127.0.0.1", 0, ""), "non-empty token");
  EXPECT_VALUE_ERROR(StoreServer("127.0.0.1", 0, kToken, StoreServerOptions().max_keys(0)),
                     "max_keys = 0");
}

TEST(Store, ClientsWithTheTokenShareKeysAndCounters) {
  StoreServer server("127.0.0.1", 0, kToken);
  auto a = client(server.port());
  auto b = client(server.port());
  EXPECT_EQ(a->add("n", 1), 1);
  EXPECT_EQ(b->add("n", 5), 6);
  EXPECT_EQ(a->add("n", -2), 4);
  EXPECT_EQ(b->get("n"), bytes("4"));  // as c10d::TCPStore: the counter is decimal text
  a->set("k", bytes(std::string("\0\xff", 2)));
  EXPECT_EQ(b->get("k"), bytes(std::string("\0\xff", 2)));
  EXPECT_TRUE(b->check({"k", "n"}));
  EXPECT_FALSE(b->check({"k", "missing"}));
  EXPECT_EQ(a->getNumKeys(), 2);
  EXPECT_TRUE(a->deleteKey("k"));
  EXPECT_FALSE(a->deleteKey("k"));
  EXPECT_EQ(b->getNumKeys(), 1);
  EXPECT_THROW(a->add("n", INT64_MAX), c10::Error);  // overflow: an error, value unchanged
  EXPECT_EQ(a->add("n", 0), 4);
  a->set("text", bytes("abc"));
  EXPECT_THROW(a->add("text", 1), c10::Error);
  // get() waits for a key another client sets later.
  std::thread later([&] {
    std::this_thread::sleep_for(milliseconds(200));
    b->set("late", bytes("v"));
  });
  EXPECT_EQ(a->get("late"), bytes("v"));
  later.join();
  const auto t0 = Clock::now();
  EXPECT_THROW(a->wait({"never"}, milliseconds(300)), c10::Error);
  EXPECT_GE(Clock::now() - t0, milliseconds(300));
  // The connection is still usable after a wait that timed out on the server.
  EXPECT_EQ(a->add("n", 0), 4);
}

TEST(Store, WrongTokenIsRefusedAndChangesNothing) {
  StoreServer server("127.0.0.1", 0, kToken);
  const int port = server.port();
  auto good = client(port);
  EXPECT_EQ(good->add("qsched/work/1", 1), 1);

  const auto t0 = Clock::now();
  EXPECT_VALUE_ERROR(
      StoreClient("127.0.0.1", port, "another-token-0123456789", milliseconds(60000)),
      "refused this process's QSCHED_DIST_TOKEN");
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(30));  // at once, not after the timeout

  // A raw client with a wrong HMAC gets 'R' and the connection closes; what it sends after
  // is never read as a request.
  int fd = -1;
  EXPECT_EQ(handshake(port, "wrong", &fd), 'R');
  ASSERT_GE(fd, 0);
  send_all(fd, std::string(1, kAdd) + field("qsched/work/1") + be64(1000));
  EXPECT_TRUE(closed_within(fd, 30));
  close(fd);
  // A client that skips the handshake and sends a request: read as a (bad) handshake.
  fd = tcp_connect("127.0.0.1", port);
  ASSERT_GE(fd, 0);
  std::string req = std::string(1, kAdd) + field("qsched/work/1") + be64(1000);
  for (int i = 0; i < 8; ++i) send_all(fd, req);  // well over the 72 handshake bytes
  EXPECT_TRUE(closed_within(fd, 30));
  close(fd);

  EXPECT_EQ(good->add("qsched/work/1", 0), 1);  // untouched
  EXPECT_EQ(good->getNumKeys(), 1);
  EXPECT_GE(server.refused(), 3);
}

TEST(Store, ClientRefusesAServerThatDoesNotKnowTheToken) {
  // A fake server on a port: sends a challenge, ignores the answer, claims success.
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(lfd, 4), 0);
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  std::thread fake([&] {
    int fd = accept(lfd, nullptr, nullptr);
    if (fd < 0) return;
    send_all(fd, "QSTORE01" + std::string(32, 's'));
    std::string answer;
    recv_exact(fd, 72, 30, &answer);
    send_all(fd, "A" + std::string(32, '\0'));
    closed_within(fd, 30);
    close(fd);
  });
  EXPECT_VALUE_ERROR(StoreClient("127.0.0.1", ntohs(a.sin_port), kToken, milliseconds(30000)),
                     "without proving it knows QSCHED_DIST_TOKEN");
  fake.join();
  close(lfd);
}

TEST(Store, OversizedLengthsAreRefusedWithoutAllocating) {
  StoreServer server("127.0.0.1", 0, kToken);
  auto good = client(server.port());
  const long long rss0 = test::resident_bytes();
  // SET with a 2 GiB key length, then nothing; and a 2 GiB value length after a valid key.
  int k = authed(server.port());
  ASSERT_GE(k, 0);
  send_all(k, std::string(1, kSet) + be32(0x80000000u));
  int v = authed(server.port());
  ASSERT_GE(v, 0);
  send_all(v, std::string(1, kSet) + field("key") + be32(0x80000000u) + "partial");
  EXPECT_TRUE(closed_within(k, 30));
  EXPECT_TRUE(closed_within(v, 30));
  close(k);
  close(v);
  EXPECT_EQ(server.dropped(), 2);
  EXPECT_LT(test::resident_bytes() - rss0, 256ll << 20);
  // The others were not held up and nothing was stored.
  EXPECT_EQ(good->add("n", 1), 1);
  EXPECT_EQ(good->getNumKeys(), 1);
  // The client checks its own requests against the same limits before sending.
  EXPECT_THROW(good->set(std::string(5000, 'k'), bytes("v")), c10::Error);
  EXPECT_THROW(good->set("big", std::vector<uint8_t>((1 << 20) + 1)), c10::Error);
  EXPECT_EQ(good->add("n", 0), 1);
}

TEST(Store, HalfSentRequestStallsNobody) {
  // The server would wait an hour for the rest of the message: the other clients must not.
  StoreServer server("127.0.0.1", 0, kToken, StoreServerOptions().message_seconds(3600));
  int fd = authed(server.port());
  ASSERT_GE(fd, 0);
  send_all(fd, std::string(1, kSet) + be32(5) + "ab");
  int silent = tcp_connect("127.0.0.1", server.port());  // and one that never handshakes
  auto good = client(server.port(), 20);
  EXPECT_EQ(good->add("n", 1), 1);
  good->set("k", bytes("v"));
  EXPECT_EQ(good->get("k"), bytes("v"));
  auto late = client(server.port(), 20);  // new connections are accepted too
  EXPECT_EQ(late->add("n", 1), 2);
  close(fd);
  if (silent >= 0) close(silent);
}

TEST(Store, HalfSentRequestOrHandshakeIsClosedAfterTheReadTimeout) {
  StoreServer server("127.0.0.1", 0, kToken,
                     StoreServerOptions().message_seconds(0.5).handshake_seconds(0.5));
  int fd = authed(server.port());
  ASSERT_GE(fd, 0);
  send_all(fd, std::string(1, kSet) + be32(5) + "ab");
  EXPECT_TRUE(closed_within(fd, 30));
  close(fd);
  EXPECT_EQ(server.dropped(), 1);
  int silent = tcp_connect("127.0.0.1", server.port());
  ASSERT_GE(silent, 0);
  EXPECT_TRUE(closed_within(silent, 30));  // (the challenge arrives first, then EOF)
  close(silent);
  EXPECT_GE(server.refused(), 1);
}

TEST(Store, UnknownRequestTypeClosesTheConnection) {
  StoreServer server("127.0.0.1", 0, kToken);
  int fd = authed(server.port());
  ASSERT_GE(fd, 0);
  send_all(fd, std::string(1, '\xee') + "whatever");
  EXPECT_TRUE(closed_within(fd, 30));
  close(fd);
  EXPECT_EQ(server.dropped(), 1);
}

TEST(Store, KeysAndBytesAreBounded) {
  StoreServer server("127.0.0.1", 0, kToken, StoreServerOptions().max_keys(3).max_total_bytes(100));
  auto c = client(server.port());
  c->set("a", bytes("1"));
  c->set("b", bytes("2"));
  c->set("c", bytes("3"));
  try {
    c->set("d", bytes("4"));
    ADD_FAILURE() << "a 4th key was stored";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("store is full: it holds 3 keys"),
              std::string::npos)
        << e.what_without_backtrace();
  }
  EXPECT_THROW(c->add("e", 1), c10::Error);
  c->set("a", bytes("replaced"));  // an existing key may change
  EXPECT_THROW(c->set("b", std::vector<uint8_t>(200)), c10::Error);
  EXPECT_TRUE(c->deleteKey("c"));
  c->set("d", bytes("4"));
  EXPECT_EQ(c->getNumKeys(), 3);
}

TEST(Store, PendingConnectionsAreBounded) {
  // Two connections that never finish the handshake (the server would wait an hour) use up
  // max_pending = 2: a third is closed at once, without a challenge.
  StoreServer server("127.0.0.1", 0, kToken,
                     StoreServerOptions().max_pending(2).handshake_seconds(3600));
  int s1 = tcp_connect("127.0.0.1", server.port());
  int s2 = tcp_connect("127.0.0.1", server.port());
  ASSERT_GE(s1, 0);
  ASSERT_GE(s2, 0);
  std::string hello;
  ASSERT_TRUE(recv_exact(s1, 40, 30, &hello));  // both are being served
  ASSERT_TRUE(recv_exact(s2, 40, 30, &hello));
  int s3 = tcp_connect("127.0.0.1", server.port());
  ASSERT_GE(s3, 0);
  EXPECT_FALSE(recv_exact(s3, 40, 30, &hello));
  close(s3);
  EXPECT_THROW(client(server.port(), 1.0), c10::Error);  // retried, never served
  // One squatter leaves: a real client gets its place.
  close(s1);
  auto c = client(server.port(), 30);
  EXPECT_EQ(c->add("n", 1), 1);
  close(s2);
}

TEST(Store, ClientsFailAtOnceWhenTheServerGoes) {
  auto server = std::make_unique<StoreServer>("127.0.0.1", 0, kToken);
  auto c = client(server->port(), 600);
  EXPECT_EQ(c->add("n", 1), 1);
  std::atomic<bool> waiting{false};
  std::string error;
  std::thread waiter([&] {
    auto w = client(server->port(), 600);
    waiting = true;
    try {
      w->wait({"never"});
    } catch (const c10::Error& e) {
      error = e.what_without_backtrace();
    }
  });
  while (!waiting) std::this_thread::sleep_for(milliseconds(10));
  std::this_thread::sleep_for(milliseconds(100));
  const auto t0 = Clock::now();
  server.reset();  // joins its threads: the waiting one is released
  waiter.join();
  EXPECT_NE(error.find("connection closed"), std::string::npos) << error;
  EXPECT_THROW(c->add("n", 1), c10::Error);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(60));
}

TEST(Store, NobodyListeningFailsAfterTheTimeout) {
  const int port = free_loopback_port();
  const auto t0 = Clock::now();
  try {
    StoreClient c("127.0.0.1", port, kToken, milliseconds(1000));
    ADD_FAILURE() << "connected to nobody";
  } catch (const c10::ValueError& e) {
    ADD_FAILURE() << e.what_without_backtrace();
  } catch (const c10::Error& e) {
    EXPECT_NE(
        std::string(e.what_without_backtrace()).find("no qsched store answered at 127.0.0.1:"),
        std::string::npos)
        << e.what_without_backtrace();
  }
  EXPECT_GE(Clock::now() - t0, milliseconds(1000));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(30));
}

}  // namespace
}  // namespace qsched::meta

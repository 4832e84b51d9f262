// Hostile XML: DTDs, entities, external references, depth and size limits.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "espace/fhir/json.h"
#include "espace/fhir/xml.h"
#include "xml_test_util.h"

using namespace espace::fhir;

namespace {

std::string first_message_id(const Status& st) { return st.issues().empty() ? "" : st.issues()[0].message_id; }

// Everything a caller could see of the outcome, to look for leaked content.
std::string everything_reported(const Status& st, const Node& node) {
  std::string all;
  for (const Issue& i : st.issues()) all += i.diagnostics + "\n" + i.expression + "\n";
  all += write_json(node);
  return all;
}

// A TCP listener on an ephemeral loopback port that records whether anyone connected.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~Listener() { ::close(fd_); }
  int port() const { return port_; }
  // A connection attempt completes the handshake in the kernel, so it is in
  // the accept queue as soon as connect() has returned.
  bool was_contacted() {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return false;
    ::close(c);
    return true;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace

TEST_CASE("xml: an external entity (XXE) is refused and the file is never read into the result", "[xml][security]") {
  const Definitions& defs = xml_test::definitions();
  // A file with a recognisable secret, standing in for /etc/passwd.
  const std::filesystem::path secret_file =
      std::filesystem::temp_directory_path() / ("espace-xxe-" + std::to_string(::getpid()) + ".txt");
  { std::ofstream(secret_file) << "TOP-SECRET-MARKER-6d1f"; }

  for (const std::string& target : {std::string("file://") + secret_file.string(), std::string("file:///etc/passwd")}) {
    INFO(target);
    const std::string doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE Patient [\n  <!ENTITY x SYSTEM \"" + target +
                            "\">\n]>\n<Patient xmlns=\"http://hl7.org/fhir\">\n  <id value=\"&x;\"/>\n"
                            "  <gender value=\"&x;\"/>\n</Patient>\n";
    Node node;
    Status st = parse_xml(defs, doc, &node);
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.category() == ErrorCategory::Invalid);
    CHECK(first_message_id(st) == "xml-doctype-forbidden");
    CHECK(st.issues()[0].line == 2);
    const std::string seen = everything_reported(st, node);
    CHECK(seen.find("TOP-SECRET-MARKER") == std::string::npos);
    CHECK(seen.find("root:") == std::string::npos);
  }
  std::filesystem::remove(secret_file);
}

TEST_CASE("xml: billion laughs is refused before any expansion", "[xml][security]") {
  std::string doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = i == 1 ? "lol" : "lol" + std::to_string(i - 1);
    doc += " <!ENTITY lol" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) doc += "&" + prev + ";";
    doc += "\">\n";
  }
  doc += "]>\n<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&lol9;\"/></Patient>";
  Node node;
  Status st = parse_xml(xml_test::definitions(), doc, &node);
  REQUIRE_FALSE(st.is_ok());
  CHECK(first_message_id(st) == "xml-doctype-forbidden");
  CHECK(write_json(node).find("lollol") == std::string::npos);
}

TEST_CASE("xml: external DTDs and parameter entities are refused without network access", "[xml][security]") {
  Listener listener;
  const std::string base = "http://127.0.0.1:" + std::to_string(listener.port());
  const std::vector<std::string> docs = {
      // External DTD subset.
      "<?xml version=\"1.0\"?><!DOCTYPE Patient SYSTEM \"" + base +
          "/evil.dtd\"><Patient xmlns=\"http://hl7.org/fhir\"><id value=\"a\"/></Patient>",
      "<?xml version=\"1.0\"?><!DOCTYPE Patient PUBLIC \"-//X//Y//EN\" \"" + base +
          "/evil.dtd\"><Patient xmlns=\"http://hl7.org/fhir\"/>",
      // Parameter entity pulled in from inside the internal subset.
      "<?xml version=\"1.0\"?><!DOCTYPE Patient [<!ENTITY % p SYSTEM \"" + base +
          "/p.dtd\"> %p;]><Patient xmlns=\"http://hl7.org/fhir\"/>",
      // General external entity over http.
      "<?xml version=\"1.0\"?><!DOCTYPE Patient [<!ENTITY x SYSTEM \"" + base +
          "/x\">]><Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&x;\"/></Patient>",
  };
  for (const std::string& doc : docs) {
    INFO(doc);
    Node node;
    Status st = parse_xml(xml_test::definitions(), doc, &node);
    REQUIRE_FALSE(st.is_ok());
    CHECK(first_message_id(st) == "xml-doctype-forbidden");
  }
  CHECK_FALSE(listener.was_contacted());
  // The check above can fail: a direct connection is seen.
  {
    int c = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(listener.port()));
    REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    CHECK(listener.was_contacted());
    ::close(c);
  }
}

TEST_CASE("xml: undeclared entities are malformed, predefined ones and character references work", "[xml][security]") {
  const Definitions& defs = xml_test::definitions();
  Node node;
  Status st = parse_xml(defs, "<Patient xmlns=\"http://hl7.org/fhir\">\n<id value=\"&nbsp;\"/></Patient>", &node);
  REQUIRE_FALSE(st.is_ok());
  CHECK(first_message_id(st) == "xml-malformed");
  CHECK(st.issues()[0].line == 2);

  REQUIRE(parse_xml(defs,
                    "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"a&amp;b&#x41;&#66;&lt;\"/></Patient>",
                    &node));
  CHECK(node.child_value("id") == "a&bAB<");
}

TEST_CASE("xml: nesting depth is limited", "[xml][security]") {
  const Definitions& defs = xml_test::definitions();
  auto nested = [](int levels) {
    std::string doc = "<Patient xmlns=\"http://hl7.org/fhir\">";
    for (int i = 0; i < levels; ++i) doc += "<extension url=\"http://e.org/x\">";
    doc += "<valueString value=\"v\"/>";
    for (int i = 0; i < levels; ++i) doc += "</extension>";
    return doc + "</Patient>";
  };
  Node node;
  // Patient + 60 extensions + valueString = 62 levels: within the default 64.
  CHECK(parse_xml(defs, nested(60), &node).is_ok());
  Status st = parse_xml(defs, nested(100), &node);
  REQUIRE_FALSE(st.is_ok());
  CHECK(first_message_id(st) == "xml-too-deep");

  ParseLimits shallow;
  shallow.max_depth = 5;
  st = parse_xml(defs, nested(4), &node, shallow);
  REQUIRE_FALSE(st.is_ok());
  CHECK(first_message_id(st) == "xml-too-deep");
  CHECK(parse_xml(defs, nested(3), &node, shallow).is_ok());

  // Deep markup hidden in the narrative counts too.
  std::string div_doc = "<Patient xmlns=\"http://hl7.org/fhir\"><text><status value=\"generated\"/>"
                        "<div xmlns=\"http://www.w3.org/1999/xhtml\">";
  for (int i = 0; i < 200; ++i) div_doc += "<span>";
  for (int i = 0; i < 200; ++i) div_doc += "</span>";
  div_doc += "</div></text></Patient>";
  st = parse_xml(defs, div_doc, &node);
  REQUIRE_FALSE(st.is_ok());
  CHECK(first_message_id(st) == "xml-too-deep");
}

TEST_CASE("xml: size is limited", "[xml][security]") {
  const Definitions& defs = xml_test::definitions();
  std::string doc = "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"a\"/>";
  for (int i = 0; i < 100; ++i) doc += "<!-- padding padding padding -->";
  doc += "</Patient>";
  ParseLimits small;
  small.max_bytes = 1000;
  REQUIRE(doc.size() > small.max_bytes);
  Node node;
  Status st = parse_xml(defs, doc, &node, small);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.category() == ErrorCategory::TooLarge);
  CHECK(first_message_id(st) == "xml-too-large");
  small.max_bytes = doc.size();
  CHECK(parse_xml(defs, doc, &node, small).is_ok());

  // libxml2's own cap on one value (10 MB without XML_PARSE_HUGE, which is
  // never set) is reported as the syntax error it is.
  const std::string huge_value = "<Binary xmlns=\"http://hl7.org/fhir\"><contentType value=\"text/plain\"/>"
                                 "<data value=\"" + std::string(11u << 20, 'A') + "\"/></Binary>";
  st = parse_xml(defs, huge_value, &node);
  REQUIRE_FALSE(st.is_ok());
  CHECK(first_message_id(st) == "xml-malformed");
  CHECK(st.issues()[0].line == 1);
}

TEST_CASE("xml: garbage and truncated input give errors, not crashes", "[xml][security]") {
  const Definitions& defs = xml_test::definitions();
  const std::string good =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Patient xmlns=\"http://hl7.org/fhir\">\n"
      "  <id value=\"x\"/>\n  <name><given value=\"A\"/></name>\n</Patient>\n";
  Node node;
  REQUIRE(parse_xml(defs, good, &node));
  // Every prefix of a valid document is refused cleanly.
  for (size_t n = 0; n < good.size() - 1; ++n) {
    Status st = parse_xml(defs, std::string_view(good).substr(0, n), &node);
    INFO(n);
    CHECK_FALSE(st.is_ok());
    CHECK_FALSE(st.issues().empty());
  }
  for (const std::string& bad : {std::string("\0\0\0", 3), std::string("{\"resourceType\":\"Patient\"}"),
                                std::string("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"\xff\"/></Patient>"),
                                std::string("<a:Patient xmlns:a=\"http://hl7.org/fhir\"></b:Patient>")}) {
    Status st = parse_xml(defs, bad, &node);
    CHECK_FALSE(st.is_ok());
    CHECK(first_message_id(st) == "xml-malformed");
  }
}

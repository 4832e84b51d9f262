// The audit chain, independent of any database: the hash of a record, the
// check of a whole chain, and the Storage defaults for storages without an
// audit table.
//
// SHA-256 is implemented here (FIPS 180-4) because the storage library is
// deliberately free of a crypto dependency; tests compare it with OpenSSL.
#include <array>
#include <cstring>

#include "espace/storage/storage.h"

namespace espace::storage {

namespace {

using fhir::ErrorCategory;

class Sha256 {
 public:
  void update(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    length_ += size;
    while (size > 0) {
      size_t take = std::min(size, block_.size() - used_);
      std::memcpy(block_.data() + used_, p, take);
      used_ += take;
      p += take;
      size -= take;
      if (used_ == block_.size()) {
        compress();
        used_ = 0;
      }
    }
  }
  void update(std::string_view s) { update(s.data(), s.size()); }
  void update_u64(uint64_t v) {
    uint8_t be[8];
    for (int i = 7; i >= 0; --i, v >>= 8) be[i] = static_cast<uint8_t>(v);
    update(be, 8);
  }

  std::string finish() {
    uint64_t bits = length_ * 8;
    uint8_t pad = 0x80;
    update(&pad, 1);
    uint8_t zero = 0;
    while (used_ != 56) update(&zero, 1);
    uint8_t be[8];
    for (int i = 7; i >= 0; --i, bits >>= 8) be[i] = static_cast<uint8_t>(bits);
    update(be, 8);
    std::string out(32, '\0');
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) out[static_cast<size_t>(i * 4 + j)] = static_cast<char>(h_[i] >> (24 - 8 * j));
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress() {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t{block_[static_cast<size_t>(i * 4)]} << 24) | (uint32_t{block_[static_cast<size_t>(i * 4 + 1)]} << 16) |
             (uint32_t{block_[static_cast<size_t>(i * 4 + 2)]} << 8) | uint32_t{block_[static_cast<size_t>(i * 4 + 3)]};
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  std::array<uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t used_ = 0;
  uint64_t length_ = 0;
};

std::string hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

Status no_audit_table() {
  return Status::error(ErrorCategory::NotAllowed, "not-supported", "storage: this storage keeps no audit trail");
}

}  // namespace

std::string audit_sha256(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

std::string audit_content_prefix(const AuditRecord& r) {
  std::string out;
  out.reserve(32 + r.id.size() + r.patients.size() * 24);
  auto u64 = [&out](uint64_t v) {
    for (int i = 7; i >= 0; --i) out += static_cast<char>(v >> (8 * i));
  };
  u64(static_cast<uint64_t>(r.recorded_us));
  u64(r.id.size());
  out += r.id;
  u64(r.patients.size());
  for (const std::string& p : r.patients) {
    u64(p.size());
    out += p;
  }
  u64(r.json.size());
  return out;
}

std::string audit_content_hash(const AuditRecord& r) {
  Sha256 h;
  h.update(audit_content_prefix(r));
  h.update(r.json);  // not copied behind the prefix first
  return h.finish();
}

namespace {
std::string chain_hash(const std::string& prev_hash, int64_t seq, const std::string& content_hash) {
  Sha256 h;
  h.update(prev_hash);
  h.update_u64(static_cast<uint64_t>(seq));
  h.update(content_hash);
  return h.finish();
}
}  // namespace

std::string audit_chain_hash(const std::string& prev_hash, const AuditRecord& r) {
  return chain_hash(prev_hash, r.seq, r.content_hash.empty() ? audit_content_hash(r) : r.content_hash);
}

namespace {
thread_local bool flush_deferred = false;
}  // namespace

DeferFlushToNextWrite::DeferFlushToNextWrite() : previous_(flush_deferred) { flush_deferred = true; }
DeferFlushToNextWrite::~DeferFlushToNextWrite() { flush_deferred = previous_; }
bool DeferFlushToNextWrite::active_on_this_thread() { return flush_deferred; }

Status Storage::append_audit(std::vector<AuditRecord>*) { return no_audit_table(); }
void Storage::append_audit_then(std::vector<AuditRecord> records, std::function<void(Status)> done) {
  Status s = append_audit(&records);
  done(std::move(s));
}
Status Storage::read_audit(const std::string&, AuditRecord*) { return no_audit_table(); }
Status Storage::search_audit(const AuditQuery&, AuditPage*) { return no_audit_table(); }
Status Storage::scan_audit(int64_t, int, std::vector<AuditRecord>*, std::vector<int64_t>*) { return no_audit_table(); }
Status Storage::audit_head(AuditHead*) { return no_audit_table(); }

Status verify_audit_chain(Storage& storage, AuditVerification* out) {
  *out = AuditVerification{};
  AuditHead facts;
  if (Status s = storage.audit_head(&facts); !s) return s;
  const int64_t head = facts.seq;
  int64_t patient_rows = 0;
  std::string prev(kAuditHashSize, '\0');
  int64_t expected = 1;
  auto broken = [&](int64_t seq, std::string problem) {
    out->intact = false;
    out->first_bad = seq;
    out->problem = std::move(problem);
    out->head_hash = hex(prev);
    return Status::ok();
  };
  constexpr int kChunk = 512;
  std::vector<AuditRecord> chunk;
  std::vector<int64_t> index_mismatches;
  for (;;) {
    if (Status s = storage.scan_audit(expected - 1, kChunk, &chunk, &index_mismatches); !s) return s;
    size_t mismatch_at = 0;
    bool past_head = false;
    for (const AuditRecord& r : chunk) {
      // Records committed after verification began are left for the next run.
      if (r.seq > head) {
        past_head = true;
        break;
      }
      const std::string at = "record " + std::to_string(r.seq);
      if (r.seq != expected) {
        return broken(expected, "removed: record " + std::to_string(expected) +
                                    (r.seq == expected + 1 ? "" : " to " + std::to_string(r.seq - 1)) +
                                    " missing (the next stored record is " + std::to_string(r.seq) + ")");
      }
      if (r.prev_hash != prev) {
        return broken(r.seq, "reordered or removed: " + at +
                                 " does not follow the record before it (its prev_hash is not that record's hash)");
      }
      // The content digest is recomputed from what is stored, never taken on trust.
      if (chain_hash(prev, r.seq, audit_content_hash(r)) != r.hash) {
        return broken(r.seq, "altered: " + at + " does not match its hash (content, time, id or patients changed)");
      }
      while (mismatch_at < index_mismatches.size() && index_mismatches[mismatch_at] < r.seq) ++mismatch_at;
      if (mismatch_at < index_mismatches.size() && index_mismatches[mismatch_at] == r.seq) {
        return broken(r.seq, "altered: the patient index of " + at + " differs from the record's patients");
      }
      patient_rows += static_cast<int64_t>(r.patients.size());
      prev = r.hash;
      ++out->records;
      ++expected;
    }
    if (past_head || chunk.size() < static_cast<size_t>(kChunk)) break;
  }
  if (expected - 1 < head) {
    return broken(expected, "removed: the newest records " + std::to_string(expected) + " to " + std::to_string(head) +
                                " are missing (the trail recorded " + std::to_string(head) + ")");
  }
  if (patient_rows != facts.patient_index_rows) {
    return broken(head, "altered: the patient index holds " + std::to_string(facts.patient_index_rows) +
                            " rows where the records name " + std::to_string(patient_rows) + " patients");
  }
  out->intact = true;
  out->head_hash = hex(prev);
  return Status::ok();
}

}  // namespace espace::storage

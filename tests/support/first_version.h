// The first version of a resource as a create writes it (version 1, POST,
// stamped with the transaction's commit time), for storage tests.
#pragma once

#include <string>

#include "espace/storage/storage.h"

namespace espace::testing {

inline storage::ResourceVersion first_version(storage::WriteTxn& txn, std::string type, std::string id,
                                              std::string json) {
  storage::ResourceVersion v;
  v.type = std::move(type);
  v.id = std::move(id);
  v.version = 1;
  v.method = "POST";
  v.last_updated_us = txn.now_us();
  v.json = std::move(json);
  return v;
}

}  // namespace espace::testing

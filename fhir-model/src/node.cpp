// Node navigation and the small editing helpers used by parsers and the REST layer.
#include "espace/fhir/node.h"

namespace espace::fhir {

namespace {

bool fills(const Node& c, std::string_view element_name) {
  return c.def && (c.def->name == element_name || c.name == element_name);
}

Node* mutable_child(Node& parent, std::string_view element_name) {
  for (Node& c : parent.children)
    if (fills(c, element_name)) return &c;
  return nullptr;
}

}  // namespace

const Node* Node::child(std::string_view element_name) const {
  for (const Node& c : children)
    if (fills(c, element_name)) return &c;
  return nullptr;
}

std::string_view Node::child_value(std::string_view element_name) const {
  const Node* c = child(element_name);
  return c && c->has_value ? std::string_view(c->value) : std::string_view();
}

void insert_ordered(Node& parent, Node child) {
  if (!child.def) {
    parent.children.push_back(std::move(child));
    return;
  }
  // Children are usually appended in order, so search from the back.
  size_t pos = parent.children.size();
  while (pos > 0) {
    const Node& prev = parent.children[pos - 1];
    if (!prev.def || prev.def->order <= child.def->order) break;
    --pos;
  }
  parent.children.insert(parent.children.begin() + static_cast<std::ptrdiff_t>(pos), std::move(child));
}

Status set_primitive(Node& resource, std::string_view dotted_path, std::string value) {
  auto fail = [&](std::string why) {
    return Status::error(ErrorCategory::Internal, "exception",
                         "cannot set " + std::string(dotted_path) + ": " + why);
  };
  Node* node = &resource;
  std::string_view rest = dotted_path;
  while (true) {
    if (!node->type) return fail("node has no type");
    size_t dot = rest.find('.');
    std::string_view segment = rest.substr(0, dot);
    const ElementDef* def = node->type->find(segment);
    if (!def) return fail(std::string(segment) + " is not an element of " + node->type->name);
    if (def->is_choice || def->types.size() != 1) return fail(std::string(segment) + " is a choice");
    const TypeDef* type = def->types[0];
    if (dot == std::string_view::npos) {
      if (!type->is_primitive()) return fail(std::string(segment) + " is not primitive");
      Node* existing = mutable_child(*node, segment);
      if (existing) {
        if (def->is_array()) {
          // Keep only the first item, then overwrite it.
          Node keep = std::move(*existing);
          remove_element(*node, segment);
          insert_ordered(*node, std::move(keep));
          existing = mutable_child(*node, segment);
        }
        existing->value = std::move(value);
        existing->has_value = true;
        return Status::ok();
      }
      Node leaf;
      leaf.def = def;
      leaf.type = type;
      leaf.name = def->name;
      leaf.value = std::move(value);
      leaf.has_value = true;
      insert_ordered(*node, std::move(leaf));
      return Status::ok();
    }
    if (type->is_primitive()) return fail(std::string(segment) + " is primitive");
    Node* next = mutable_child(*node, segment);
    if (!next) {
      Node created;
      created.def = def;
      created.type = type;
      created.name = def->name;
      insert_ordered(*node, std::move(created));
      next = mutable_child(*node, segment);
    }
    node = next;
    rest = rest.substr(dot + 1);
  }
}

void remove_element(Node& parent, std::string_view element_name) {
  std::erase_if(parent.children, [&](const Node& c) { return fills(c, element_name); });
}

std::string_view resource_type(const Node& resource) {
  return resource.type ? std::string_view(resource.type->name) : std::string_view();
}

std::string_view resource_id(const Node& resource) { return resource.child_value("id"); }

}  // namespace espace::fhir

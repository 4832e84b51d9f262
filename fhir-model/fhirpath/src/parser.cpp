// FHIRPath grammar (N1 Appendix A) to the compiled tree: a hand-written lexer
// and precedence-climbing parser. Function names, variables and type names are
// resolved here so that evaluation does no lookups by name.
#include <cctype>
#include <cstring>

#include "engine.h"
#include "strict.h"

namespace espace::fhirpath {

namespace {

using fhir::Status;

enum class Tok { End, Ident, DelimIdent, String, Number, DateTime, Time, Var, Special, Punct };

struct Token {
  Tok kind = Tok::End;
  std::string text;  // identifier name, unescaped string, literal text, punctuation
  int column = 0;
};

Status syntax_error(int column, const std::string& message) {
  fhir::Issue i;
  i.code = "invalid";
  i.message_id = "fhirpath-syntax";
  i.column = column;
  i.diagnostics = "FHIRPath syntax error at column " + std::to_string(column) + ": " + message;
  return Status::error(fhir::ErrorCategory::Invalid, std::move(i));
}

bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_ident_char(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Status next(Token* t) {
    Status st = skip_space();
    if (!st) return st;
    t->text.clear();
    t->column = int(pos_) + 1;
    if (pos_ >= s_.size()) { t->kind = Tok::End; return Status::ok(); }
    char c = s_[pos_];
    if (is_ident_start(c)) {
      size_t b = pos_;
      while (pos_ < s_.size() && is_ident_char(s_[pos_])) ++pos_;
      t->kind = Tok::Ident;
      t->text = std::string(s_.substr(b, pos_ - b));
      return Status::ok();
    }
    if (c == '`') {
      t->kind = Tok::DelimIdent;
      return quoted('`', t);
    }
    if (c == '\'') {
      t->kind = Tok::String;
      return quoted('\'', t);
    }
    if (is_digit(c)) {
      size_t b = pos_;
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
      if (pos_ + 1 < s_.size() && s_[pos_] == '.' && is_digit(s_[pos_ + 1])) {
        ++pos_;
        while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
      }
      t->kind = Tok::Number;
      t->text = std::string(s_.substr(b, pos_ - b));
      return Status::ok();
    }
    if (c == '@') return datetime(t);
    if (c == '%') {
      ++pos_;
      t->kind = Tok::Var;
      if (pos_ < s_.size() && is_ident_start(s_[pos_])) {
        size_t b = pos_;
        while (pos_ < s_.size() && (is_ident_char(s_[pos_]) || s_[pos_] == '-')) ++pos_;
        t->text = std::string(s_.substr(b, pos_ - b));
        return Status::ok();
      }
      if (pos_ < s_.size() && (s_[pos_] == '`' || s_[pos_] == '\'')) return quoted(s_[pos_], t);
      return syntax_error(t->column, "'%' must be followed by a variable name");
    }
    if (c == '$') {
      ++pos_;
      size_t b = pos_;
      while (pos_ < s_.size() && is_ident_char(s_[pos_])) ++pos_;
      t->kind = Tok::Special;
      t->text = std::string(s_.substr(b, pos_ - b));
      if (t->text != "this" && t->text != "index" && t->text != "total")
        return syntax_error(t->column, "unknown special variable '$" + t->text + "'");
      return Status::ok();
    }
    static const char* two[] = {"<=", ">=", "!=", "!~"};
    for (const char* op : two) {
      if (s_.substr(pos_, 2) == op) {
        t->kind = Tok::Punct;
        t->text = op;
        pos_ += 2;
        return Status::ok();
      }
    }
    if (std::strchr("().,[]{}+-*/&|=~<>", c)) {
      t->kind = Tok::Punct;
      t->text = std::string(1, c);
      ++pos_;
      return Status::ok();
    }
    return syntax_error(t->column, std::string("unexpected character '") + c + "'");
  }

  size_t pos() const { return pos_; }
  void reset(size_t p) { pos_ = p; }

 private:
  Status skip_space() {
    for (;;) {
      while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n'))
        ++pos_;
      if (s_.substr(pos_, 2) == "//") {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
        continue;
      }
      if (s_.substr(pos_, 2) == "/*") {
        size_t end = s_.find("*/", pos_ + 2);
        if (end == std::string_view::npos) return syntax_error(int(pos_) + 1, "unterminated comment");
        pos_ = end + 2;
        continue;
      }
      return Status::ok();
    }
  }

  Status quoted(char q, Token* t) {
    int col = int(pos_) + 1;
    ++pos_;
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != q) {
      char c = s_[pos_];
      if (c == '\\') {
        if (pos_ + 1 >= s_.size()) break;
        char e = s_[pos_ + 1];
        pos_ += 2;
        switch (e) {
          case '\'': out.push_back('\''); break;
          case '"': out.push_back('"'); break;
          case '`': out.push_back('`'); break;
          case '\\': out.push_back('\\'); break;
          case '/': out.push_back('/'); break;
          case 'f': out.push_back('\f'); break;
          case 'n': out.push_back('\n'); break;
          case 'r': out.push_back('\r'); break;
          case 't': out.push_back('\t'); break;
          case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; ++i) {
              if (pos_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[pos_])))
                return syntax_error(int(pos_) + 1, "invalid \\u escape");
              char h = s_[pos_++];
              cp = cp * 16 + unsigned(is_digit(h) ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            append_utf8(out, cp);
            break;
          }
          default:
            return syntax_error(int(pos_) - 1, std::string("invalid escape '\\") + e + "'");
        }
        continue;
      }
      out.push_back(c);
      ++pos_;
    }
    if (pos_ >= s_.size()) return syntax_error(col, "unterminated quoted text");
    ++pos_;
    t->text = std::move(out);
    return Status::ok();
  }

  Status datetime(Token* t) {
    ++pos_;
    size_t b = pos_;
    if (pos_ < s_.size() && s_[pos_] == 'T') {
      ++pos_;
      while (pos_ < s_.size() && (is_digit(s_[pos_]) || s_[pos_] == ':' || s_[pos_] == '.')) {
        if (s_[pos_] == '.' && !(pos_ + 1 < s_.size() && is_digit(s_[pos_ + 1]))) break;
        ++pos_;
      }
      t->kind = Tok::Time;
      t->text = std::string(s_.substr(b + 1, pos_ - b - 1));
      return Status::ok();
    }
    // Date part, then an optional 'T' with time and timezone.
    while (pos_ < s_.size() && (is_digit(s_[pos_]) || s_[pos_] == '-')) ++pos_;
    bool has_t = false;
    if (pos_ < s_.size() && s_[pos_] == 'T') {
      has_t = true;
      ++pos_;
      while (pos_ < s_.size() && (is_digit(s_[pos_]) || s_[pos_] == ':' || s_[pos_] == '.')) {
        if (s_[pos_] == '.' && !(pos_ + 1 < s_.size() && is_digit(s_[pos_ + 1]))) break;
        ++pos_;
      }
      if (pos_ < s_.size() && s_[pos_] == 'Z') {
        ++pos_;
      } else if (pos_ + 5 < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-') && is_digit(s_[pos_ + 1]) &&
                 is_digit(s_[pos_ + 2]) && s_[pos_ + 3] == ':') {
        pos_ += 6;
      }
    }
    t->kind = Tok::DateTime;
    t->text = std::string(s_.substr(b, pos_ - b));
    if (!has_t) t->text.insert(0, "D");  // marks a Date literal
    return Status::ok();
  }

  std::string_view s_;
  size_t pos_ = 0;
};

int binary_precedence(const Token& t, Op* op) {
  if (t.kind == Tok::Punct) {
    const std::string& s = t.text;
    if (s == "*") { *op = Op::Mul; return 10; }
    if (s == "/") { *op = Op::Div; return 10; }
    if (s == "+") { *op = Op::Add; return 9; }
    if (s == "-") { *op = Op::Sub; return 9; }
    if (s == "&") { *op = Op::Concat; return 9; }
    if (s == "|") { *op = Op::Union; return 7; }
    if (s == "<") { *op = Op::Lt; return 6; }
    if (s == ">") { *op = Op::Gt; return 6; }
    if (s == "<=") { *op = Op::Le; return 6; }
    if (s == ">=") { *op = Op::Ge; return 6; }
    if (s == "=") { *op = Op::Eq; return 5; }
    if (s == "!=") { *op = Op::Ne; return 5; }
    if (s == "~") { *op = Op::Equiv; return 5; }
    if (s == "!~") { *op = Op::NotEquiv; return 5; }
    return 0;
  }
  if (t.kind != Tok::Ident) return 0;
  const std::string& s = t.text;
  if (s == "div") { *op = Op::IntDiv; return 10; }
  if (s == "mod") { *op = Op::Mod; return 10; }
  if (s == "is") { *op = Op::Is; return 8; }
  if (s == "as") { *op = Op::As; return 8; }
  if (s == "in") { *op = Op::In; return 4; }
  if (s == "contains") { *op = Op::Contains; return 4; }
  if (s == "and") { *op = Op::And; return 3; }
  if (s == "or") { *op = Op::Or; return 2; }
  if (s == "xor") { *op = Op::Xor; return 2; }
  if (s == "implies") { *op = Op::Implies; return 1; }
  return 0;
}

class Parser {
 public:
  Parser(std::string_view text, const CompileOptions& opts) : lex_(text), opts_(opts) {}

  Status parse(std::unique_ptr<ExprNode>* out) {
    Status st = advance();
    if (!st) return st;
    if (tok_.kind == Tok::End) return syntax_error(1, "the expression is empty");
    st = expression(0, out);
    if (!st) return st;
    if (tok_.kind != Tok::End) return syntax_error(tok_.column, "unexpected '" + tok_.text + "' after the end of the expression");
    return Status::ok();
  }

 private:
  Status advance() { return lex_.next(&tok_); }

  // Left-deep chains (1+1+1..., a.b.c...) nest without recursing in the parser;
  // the tree height bounds the evaluator's recursion.
  Status seal(ExprNode& n) {
    int h = 0;
    for (const ExprNode* c : {n.input.get(), n.right.get()})
      if (c && c->height > h) h = c->height;
    for (const auto& a : n.args)
      if (a->height > h) h = a->height;
    n.height = h + 1;
    if (n.height > opts_.max_depth) return syntax_error(n.column, "expression nested too deeply");
    return Status::ok();
  }

  bool punct(const char* p) const { return tok_.kind == Tok::Punct && tok_.text == p; }

  Status expect(const char* p) {
    if (!punct(p)) {
      std::string got = tok_.kind == Tok::End ? "the end of the expression" : "'" + tok_.text + "'";
      return syntax_error(tok_.column, std::string("expected '") + p + "' but found " + got);
    }
    return advance();
  }

  Status expression(int min_prec, std::unique_ptr<ExprNode>* out) {
    if (++depth_ > opts_.max_depth) return syntax_error(tok_.column, "expression nested too deeply");
    std::unique_ptr<ExprNode> left;
    Status st = unary(&left);
    if (!st) return st;
    for (;;) {
      Op op;
      int prec = binary_precedence(tok_, &op);
      if (prec == 0 || prec < min_prec) break;
      int col = tok_.column;
      st = advance();
      if (!st) return st;
      auto node = std::make_unique<ExprNode>();
      node->op = op;
      node->column = col;
      node->input = std::move(left);
      if (op == Op::Is || op == Op::As) {
        st = type_specifier(&node->type);
        if (!st) return st;
      } else {
        st = expression(prec + 1, &node->right);
        if (!st) return st;
      }
      st = seal(*node);
      if (!st) return st;
      left = std::move(node);
    }
    --depth_;
    *out = std::move(left);
    return Status::ok();
  }

  Status unary(std::unique_ptr<ExprNode>* out) {
    if (punct("-") || punct("+")) {
      auto node = std::make_unique<ExprNode>();
      node->op = punct("-") ? Op::Negate : Op::Plus;
      node->column = tok_.column;
      Status st = advance();
      if (!st) return st;
      if (++depth_ > opts_.max_depth) return syntax_error(tok_.column, "expression nested too deeply");
      st = unary(&node->input);
      --depth_;
      if (!st) return st;
      st = seal(*node);
      if (!st) return st;
      *out = std::move(node);
      return Status::ok();
    }
    Status st = term(out);
    if (!st) return st;
    return postfix(out);
  }

  Status postfix(std::unique_ptr<ExprNode>* inout) {
    for (;;) {
      if (punct(".")) {
        Status st = advance();
        if (!st) return st;
        std::unique_ptr<ExprNode> inv;
        st = invocation(&inv);
        if (!st) return st;
        inv->input = std::move(*inout);
        st = seal(*inv);
        if (!st) return st;
        *inout = std::move(inv);
      } else if (punct("[")) {
        auto node = std::make_unique<ExprNode>();
        node->op = Op::Indexer;
        node->column = tok_.column;
        Status st = advance();
        if (!st) return st;
        st = expression(0, &node->right);
        if (!st) return st;
        st = expect("]");
        if (!st) return st;
        node->input = std::move(*inout);
        st = seal(*node);
        if (!st) return st;
        *inout = std::move(node);
      } else {
        return Status::ok();
      }
    }
  }

  // identifier ['(' args ')'], also $this etc. after a dot are not allowed.
  Status invocation(std::unique_ptr<ExprNode>* out) {
    if (tok_.kind != Tok::Ident && tok_.kind != Tok::DelimIdent) {
      std::string got = tok_.kind == Tok::End ? "the end of the expression" : "'" + tok_.text + "'";
      return syntax_error(tok_.column, "expected a name after '.' but found " + got);
    }
    Token name = tok_;
    Status st = advance();
    if (!st) return st;
    auto node = std::make_unique<ExprNode>();
    node->column = name.column;
    node->name = name.text;
    if (name.kind == Tok::Ident && punct("(")) return call(std::move(node), out);
    node->op = Op::Member;
    *out = std::move(node);
    return Status::ok();
  }

  Status call(std::unique_ptr<ExprNode> node, std::unique_ptr<ExprNode>* out) {
    node->op = Op::Call;
    Status st = advance();  // '('
    if (!st) return st;
    if (function_takes_type(node->name) && !punct(")")) {
      st = type_specifier(&node->type);
      if (!st) return st;
      st = expect(")");
      if (!st) return st;
      std::string err;
      node->fn = find_function(node->name, 1, &err);
      if (!node->fn) return syntax_error(node->column, err);
      *out = std::move(node);
      return Status::ok();
    }
    if (!punct(")")) {
      for (;;) {
        std::unique_ptr<ExprNode> arg;
        st = expression(0, &arg);
        if (!st) return st;
        node->args.push_back(std::move(arg));
        if (punct(",")) {
          st = advance();
          if (!st) return st;
          continue;
        }
        break;
      }
    }
    st = expect(")");
    if (!st) return st;
    std::string err;
    node->fn = find_function(node->name, node->args.size(), &err);
    if (!node->fn) return syntax_error(node->column, err);
    st = seal(*node);
    if (!st) return st;
    *out = std::move(node);
    return Status::ok();
  }

  Status type_specifier(TypeSpec* t) {
    if (tok_.kind != Tok::Ident && tok_.kind != Tok::DelimIdent)
      return syntax_error(tok_.column, "expected a type name");
    int col = tok_.column;
    std::string first = tok_.text;
    Status st = advance();
    if (!st) return st;
    if (punct(".")) {
      // Qualified only when the first part is a namespace; otherwise leave the dot.
      size_t save = lex_.pos();
      Token save_tok = tok_;
      st = advance();
      if (!st) return st;
      if ((first == "FHIR" || first == "System") && (tok_.kind == Tok::Ident || tok_.kind == Tok::DelimIdent)) {
        t->ns = first;
        t->name = tok_.text;
        return check_type(col, *t, advance());
      }
      lex_.reset(save);
      tok_ = save_tok;
    }
    t->ns.clear();
    t->name = first;
    return check_type(col, *t, Status::ok());
  }

  Status check_type(int col, const TypeSpec& t, Status st) {
    if (!st) return st;
    static const char* kSystem[] = {"Boolean", "Integer", "Decimal", "String", "Date", "DateTime", "Time", "Quantity", "Any"};
    bool system = false;
    for (const char* s : kSystem) system = system || t.name == s;
    if (t.ns == "System") {
      return Status::ok();  // System.Patient simply matches nothing
    }
    if (opts_.definitions && !system && !opts_.definitions->type(t.name)) {
      fhir::Issue i;
      i.code = "invalid";
      i.message_id = "fhirpath-unknown-type";
      i.column = col;
      i.diagnostics = "FHIRPath error at column " + std::to_string(col) + ": unknown type '" + t.name + "'";
      return Status::error(fhir::ErrorCategory::Invalid, std::move(i));
    }
    return Status::ok();
  }

  Status term(std::unique_ptr<ExprNode>* out) {
    auto node = std::make_unique<ExprNode>();
    node->column = tok_.column;
    switch (tok_.kind) {
      case Tok::End:
        return syntax_error(tok_.column, "unexpected end of the expression");
      case Tok::Ident:
      case Tok::DelimIdent: {
        Token name = tok_;
        Status st = advance();
        if (!st) return st;
        node->name = name.text;
        if (name.kind == Tok::Ident) {
          if (name.text == "true" || name.text == "false") {
            node->op = Op::Literal;
            node->literal = Value::of_bool(name.text == "true");
            break;
          }
          if (punct("(")) return call(std::move(node), out);
        }
        node->op = Op::Member;
        break;
      }
      case Tok::String: {
        node->op = Op::Literal;
        node->literal = Value::of_string(tok_.text);
        Status st = advance();
        if (!st) return st;
        break;
      }
      case Tok::Number: {
        std::string text = tok_.text;
        Status st = advance();
        if (!st) return st;
        auto d = Decimal::parse(text);
        if (!d) return syntax_error(node->column, "number out of range: " + text);
        bool is_decimal = text.find('.') != std::string::npos;
        // Quantity: a number followed by a unit string or a calendar keyword.
        // Units outside our UCUM table are kept: equality still works on identical units.
        if (tok_.kind == Tok::String || (tok_.kind == Tok::Ident && is_calendar_keyword(tok_.text))) {
          Quantity q{*d, tok_.text, tok_.kind == Tok::Ident};
          node->op = Op::Literal;
          node->literal = Value::of_quantity(std::move(q));
          st = advance();
          if (!st) return st;
          break;
        }
        node->op = Op::Literal;
        if (!is_decimal && d->mant <= INT64_MAX && d->mant >= INT64_MIN && d->scale == 0) {
          node->literal = Value::of_int(int64_t(d->mant));
        } else {
          node->literal = Value::of_decimal(*d);
        }
        break;
      }
      case Tok::DateTime:
      case Tok::Time: {
        std::optional<Temporal> t;
        if (tok_.kind == Tok::Time) t = Temporal::parse_time(tok_.text);
        else if (tok_.text[0] == 'D') t = Temporal::parse_date(std::string_view(tok_.text).substr(1));
        else {
          std::string s = tok_.text;
          if (!s.empty() && s.back() == 'T') s.pop_back();  // @2015T: a DateTime of year precision
          t = Temporal::parse_datetime(s);
          if (t) t->kind = TemporalKind::DateTime;
        }
        if (!t) return syntax_error(node->column, "invalid date/time literal");
        node->op = Op::Literal;
        node->literal = Value::of_temporal(*t);
        Status st = advance();
        if (!st) return st;
        break;
      }
      case Tok::Var: {
        node->op = Op::Variable;
        node->name = tok_.text;
        const std::string& v = node->name;
        if (v == "context") node->var = VarKind::Context;
        else if (v == "resource") node->var = VarKind::Resource;
        else if (v == "rootResource") node->var = VarKind::RootResource;
        else if (v == "ucum") { node->var = VarKind::Constant; node->literal = Value::of_string("http://unitsofmeasure.org"); }
        else if (v == "sct") { node->var = VarKind::Constant; node->literal = Value::of_string("http://snomed.info/sct"); }
        else if (v == "loinc") { node->var = VarKind::Constant; node->literal = Value::of_string("http://loinc.org"); }
        else if (v.rfind("vs-", 0) == 0) {
          node->var = VarKind::Constant;
          node->literal = Value::of_string("http://hl7.org/fhir/ValueSet/" + v.substr(3));
        } else if (v.rfind("ext-", 0) == 0) {
          node->var = VarKind::Constant;
          node->literal = Value::of_string("http://hl7.org/fhir/StructureDefinition/" + v.substr(4));
        } else {
          node->var = VarKind::User;
        }
        Status st = advance();
        if (!st) return st;
        break;
      }
      case Tok::Special: {
        node->op = tok_.text == "this" ? Op::This : tok_.text == "index" ? Op::Index : Op::Total;
        Status st = advance();
        if (!st) return st;
        break;
      }
      case Tok::Punct: {
        if (punct("(")) {
          Status st = advance();
          if (!st) return st;
          st = expression(0, out);
          if (!st) return st;
          return expect(")");
        }
        if (punct("{")) {
          Status st = advance();
          if (!st) return st;
          st = expect("}");
          if (!st) return st;
          node->op = Op::Empty;
          break;
        }
        return syntax_error(tok_.column, "unexpected '" + tok_.text + "'");
      }
    }
    *out = std::move(node);
    return Status::ok();
  }

  Lexer lex_;
  Token tok_;
  const CompileOptions& opts_;
  int depth_ = 0;
};

}  // namespace

// Last touches after parsing: literal collections for operators, the strict
// flag, regular expressions given as literals compiled once (and checked now).
Status finish(ExprNode& n, bool strict) {
  if (n.op == Op::Literal) n.literal_items = {n.literal};
  n.strict = strict;
  if (n.op == Op::Call && (n.name == "matches" || n.name == "matchesFull" || n.name == "replaceMatches") &&
      !n.args.empty() && n.args[0]->op == Op::Literal && n.args[0]->literal.kind() == ValueKind::String &&
      !n.args[0]->literal.as_string().empty()) {
    auto re = std::make_shared<Regex>();
    std::string error;
    if (!re->compile(n.args[0]->literal.as_string(), n.name == "matchesFull", &error))
      return syntax_error(n.args[0]->column, "invalid regular expression: " + error);
    n.regex = std::move(re);
  }
  for (ExprNode* child : {n.input.get(), n.right.get()})
    if (child) {
      Status st = finish(*child, strict);
      if (!st) return st;
    }
  for (auto& a : n.args) {
    Status st = finish(*a, strict);
    if (!st) return st;
  }
  return Status::ok();
}

Expression::~Expression() = default;

fhir::Status compile(std::string_view text, const CompileOptions& options, std::shared_ptr<const Expression>* out) {
  if (text.size() > options.max_length)
    return syntax_error(1, "expression longer than " + std::to_string(options.max_length) + " characters");
  std::unique_ptr<ExprNode> root;
  Parser p(text, options);
  Status st = p.parse(&root);
  if (!st) return st;
  if (options.strict && options.definitions) {
    st = strict_check(*root, *options.definitions, options.root_type);
    if (!st) return st;
  }
  st = finish(*root, options.strict);
  if (!st) return st;
  std::shared_ptr<Expression> e(new Expression());
  e->text_ = std::string(text);
  e->root_ = std::move(root);
  e->defs_ = options.definitions;
  *out = std::move(e);
  return Status::ok();
}

}  // namespace espace::fhirpath

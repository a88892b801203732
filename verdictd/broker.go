package verdictd

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/inclavare-containers/inclavare-go/attestation"
	"github.com/inclavare-containers/inclavare-go/attestation/policy"
	"github.com/inclavare-containers/inclavare-go/ear"
	"github.com/inclavare-containers/inclavare-go/kbs"
)

// Defaults.
const (
	DefaultSessionTTL = 5 * time.Minute
	// DefaultMaxSessions allows about 55 new sessions a second sustained at the default TTL.
	DefaultMaxSessions = 16384
	// Request body limits: a Request is small; an Attestation carries a quote and perhaps an
	// event log.
	maxRequestBody     = 64 << 10
	maxAttestationBody = 8 << 20
	nonceSize          = 32
)

// Config is what a Broker serves and trusts.
type Config struct {
	// Options are the verification inputs: per-TEE trust anchors and collateral.
	Options  attestation.Options
	Policies *Policies
	Store    *Store
	// TokenKey signs the EAR attestation tokens (ES256 or RS256).
	TokenKey crypto.Signer
	// SessionTTL is how long a session (its challenge, then its attestation) lives.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions held at once (pending and attested). When it is reached,
	// expired sessions go first, then the oldest pending one; with all of them attested and
	// live, /auth is refused (503) until one expires.
	MaxSessions int
	Log         *slog.Logger
	// Build names this verifier in tokens (ear.verifier-id build), e.g. "verdictd 0.1.0".
	Build string
	// Now is the clock of sessions and tokens; nil means time.Now. (Evidence is verified at
	// Options.Time().)
	Now func() time.Time
}

// Broker is the key broker: an http.Handler for the KBS protocol paths.
type Broker struct {
	cfg Config

	mu       sync.Mutex
	sessions map[string]*session
}

type sessionState int

const (
	stateAuthed    sessionState = iota // challenge sent, nonce unused
	stateAttesting                     // nonce taken by an /attest in progress
	stateAttested                      // evidence verified and bound; resources may be asked for
)

type session struct {
	id      string
	version string
	tee     attestation.TEE
	nonce   string
	expires time.Time
	state   sessionState

	key    *kbs.JWK
	result *attestation.Result
}

// New checks cfg and returns a Broker.
func New(cfg Config) (*Broker, error) {
	if cfg.Policies == nil || cfg.Store == nil || cfg.TokenKey == nil {
		return nil, errors.New("verdictd: policies, a resource store and a token key are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Build == "" {
		cfg.Build = "verdictd"
	}
	return &Broker{cfg: cfg, sessions: map[string]*session{}}, nil
}

// ServeTLS serves the broker on l over TLS 1.3 with cert until ctx ends, then shuts down.
func (b *Broker) ServeTLS(ctx context.Context, l net.Listener, cert tls.Certificate) error {
	srv := &http.Server{
		Handler:           b,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(b.cfg.Log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		case <-done:
		}
	}()
	err := srv.ServeTLS(l, "", "")
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// refusal is a failed request: what the client is told (trustee's error JSON) and logged.
type refusal struct {
	status int
	typ    string
	detail string
	rules  []string // the policy rules that failed, for the log
}

func (r *refusal) Error() string { return r.detail }

func refuse(status int, typ, format string, args ...any) *refusal {
	return &refusal{status: status, typ: typ, detail: fmt.Sprintf(format, args...)}
}

// ServeHTTP routes the KBS paths. Paths are matched on their escaped form and never cleaned, so
// "/kbs/v0/resource/%2e%2e/x" is a refused path, not a redirect.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	var method string
	var handle func(http.ResponseWriter, *http.Request) *refusal
	switch {
	case p == kbs.AuthPath:
		method, handle = http.MethodPost, b.auth
	case p == kbs.AttestPath:
		method, handle = http.MethodPost, b.attest
	case strings.HasPrefix(p, kbs.ResourcePrefix):
		method, handle = http.MethodGet, b.resource
	default:
		b.fail(w, r, refuse(http.StatusNotFound, kbs.ErrInvalidPath, "request path %q is not a KBS path this broker serves (%s, %s, %s<repository>/<type>/<tag>)", p, kbs.AuthPath, kbs.AttestPath, kbs.ResourcePrefix))
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		b.fail(w, r, refuse(http.StatusMethodNotAllowed, kbs.ErrInvalidPath, "%s %s: only %s is served", r.Method, p, method))
		return
	}
	if ref := handle(w, r); ref != nil {
		b.fail(w, r, ref)
	}
}

func (b *Broker) fail(w http.ResponseWriter, r *http.Request, ref *refusal) {
	body, _ := json.Marshal(kbs.ErrorInfo{Type: kbs.ErrorTypePrefix + ref.typ, Detail: ref.detail})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ref.status)
	_, _ = w.Write(body)
}

func readBody(r *http.Request, limit int64) ([]byte, *refusal) {
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, kbs.ErrSerde, "read request body: %v", err)
	}
	if int64(len(data)) > limit {
		return nil, refuse(http.StatusRequestEntityTooLarge, kbs.ErrSerde, "request body larger than %d bytes", limit)
	}
	return data, nil
}

func (b *Broker) auth(w http.ResponseWriter, r *http.Request) *refusal {
	log := b.cfg.Log.With("step", "auth", "remote", r.RemoteAddr)
	fail := func(ref *refusal) *refusal {
		log.Warn("refused", "reason", ref.detail)
		return ref
	}
	body, ref := readBody(r, maxRequestBody)
	if ref != nil {
		return fail(ref)
	}
	var req kbs.Request
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(refuse(http.StatusUnauthorized, kbs.ErrSerde, "request is not {\"version\", \"tee\", \"extra-params\"}: %v", err))
	}
	if err := kbs.CheckVersion(req.Version); err != nil {
		// trustee's words, which guest-components' tests look for.
		return fail(refuse(http.StatusUnauthorized, kbs.ErrAttestation, "KBS Client Protocol Version Mismatch: %v", err))
	}
	tee, err := kbs.TEEOf(req.TEE)
	if err != nil {
		return fail(refuse(http.StatusUnauthorized, kbs.ErrAttestation, "%v", err))
	}
	if err := kbs.RequestHashAlgorithms(req.ExtraParams); err != nil {
		return fail(refuse(http.StatusUnauthorized, kbs.ErrAttestation, "%v", err))
	}
	id, err := randomString(16, hex.EncodeToString)
	if err != nil {
		return fail(refuse(http.StatusInternalServerError, kbs.ErrAttestation, "session id: %v", err))
	}
	nonce, err := randomString(nonceSize, base64.StdEncoding.EncodeToString)
	if err != nil {
		return fail(refuse(http.StatusInternalServerError, kbs.ErrAttestation, "nonce: %v", err))
	}
	now := b.cfg.Now()
	s := &session{id: id, version: req.Version, tee: tee, nonce: nonce, expires: now.Add(b.cfg.SessionTTL)}
	b.mu.Lock()
	if len(b.sessions) >= b.cfg.MaxSessions {
		b.purgeLocked(now)
	}
	if len(b.sessions) >= b.cfg.MaxSessions {
		// Anyone can open sessions: a flood of them must not lock attested workloads out, so
		// the oldest challenge still waiting for its attestation makes room.
		b.evictOldestPendingLocked()
	}
	if len(b.sessions) >= b.cfg.MaxSessions {
		b.mu.Unlock()
		return fail(refuse(http.StatusServiceUnavailable, kbs.ErrAttestation, "too many open sessions (%d): try again later", b.cfg.MaxSessions))
	}
	b.sessions[id] = s
	b.mu.Unlock()
	log.Info("challenge", "session", shortID(id), "tee", tee, "version", req.Version)
	b.setCookie(w, s)
	return writeJSON(w, kbs.Challenge{Nonce: nonce, ExtraParams: json.RawMessage(`{"selected-hash-algorithm":"sha384"}`)})
}

func (b *Broker) setCookie(w http.ResponseWriter, s *session) {
	http.SetCookie(w, &http.Cookie{Name: kbs.CookieName, Value: s.id, Path: kbs.PathPrefix, Expires: s.expires,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func writeJSON(w http.ResponseWriter, v any) *refusal {
	body, err := json.Marshal(v)
	if err != nil {
		return refuse(http.StatusInternalServerError, kbs.ErrSerde, "encode answer: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return nil
}

// purgeLocked drops expired sessions.
func (b *Broker) purgeLocked(now time.Time) {
	for id, s := range b.sessions {
		if !now.Before(s.expires) {
			delete(b.sessions, id)
		}
	}
}

// evictOldestPendingLocked drops the oldest session whose challenge is unanswered.
func (b *Broker) evictOldestPendingLocked() {
	var oldest *session
	for _, s := range b.sessions {
		if s.state == stateAuthed && (oldest == nil || s.expires.Before(oldest.expires)) {
			oldest = s
		}
	}
	if oldest != nil {
		delete(b.sessions, oldest.id)
	}
}

// sessionOf finds the request's session, dropping it when expired.
func (b *Broker) sessionOf(r *http.Request, now time.Time) (*session, *refusal) {
	ck, err := r.Cookie(kbs.CookieName)
	if err != nil || ck.Value == "" {
		if r.Header.Get("Authorization") != "" {
			return nil, refuse(http.StatusUnauthorized, kbs.ErrTokenNotFound, "bearer tokens are not accepted: attest and send the %s cookie", kbs.CookieName)
		}
		return nil, refuse(http.StatusUnauthorized, kbs.ErrTokenNotFound, "no %s cookie: POST %s first", kbs.CookieName, kbs.AuthPath)
	}
	s, ok := b.sessions[ck.Value]
	if !ok {
		return nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "unknown session (never opened, expired or already failed): POST %s again", kbs.AuthPath)
	}
	if !now.Before(s.expires) {
		delete(b.sessions, s.id)
		return nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "session expired at %s: POST %s again", s.expires.UTC().Format(time.RFC3339), kbs.AuthPath)
	}
	return s, nil
}

func (b *Broker) attest(w http.ResponseWriter, r *http.Request) *refusal {
	log := b.cfg.Log.With("step", "attest", "remote", r.RemoteAddr)
	b.mu.Lock()
	s, ref := b.sessionOf(r, b.cfg.Now())
	if ref == nil && s.state != stateAuthed {
		ref = refuse(http.StatusUnauthorized, kbs.ErrAttestation, "this session's nonce was already used: a challenge answers one attestation (POST %s for a new one)", kbs.AuthPath)
	}
	if ref != nil {
		b.mu.Unlock()
		log.Warn("refused", "reason", ref.detail)
		return ref
	}
	// Take the nonce: whatever happens next, it is never accepted again.
	s.state = stateAttesting
	b.mu.Unlock()
	log = log.With("session", shortID(s.id), "tee", s.tee)

	res, key, ref := b.verify(r, s)
	b.mu.Lock()
	if ref == nil && !b.cfg.Now().Before(s.expires) {
		ref = refuse(http.StatusUnauthorized, kbs.ErrAttestation, "session expired at %s during attestation", s.expires.UTC().Format(time.RFC3339))
	}
	if ref != nil {
		delete(b.sessions, s.id)
		b.mu.Unlock()
		args := []any{"reason", ref.detail}
		if res != nil {
			args = append(args, "measurement", primaryMeasurement(res), "measurements", res.Measurements)
		}
		log.Warn("refused", args...)
		return ref
	}
	s.key, s.result, s.state = key, res, stateAttested
	b.mu.Unlock()

	appraisal := &ear.Appraisal{PolicyID: b.cfg.Policies.ID, AnnotatedEvidence: map[string]any{
		string(res.TEE):       ear.Claims(res),
		"report_data":         hex.EncodeToString(res.ReportData),
		"runtime_data_claims": map[string]any{"nonce": s.nonce, "tee-pubkey": key},
	}}
	if d := b.cfg.Policies.Default; d != nil {
		err := d.Check(res)
		appraisal.Status = ear.StatusOf(true, true, err == nil)
		for _, v := range policy.Violations(err) {
			appraisal.Violations = append(appraisal.Violations, v.Error())
		}
	} else {
		appraisal.Status = ear.StatusOf(true, false, false)
	}
	now := b.cfg.Now()
	tok := &ear.Token{Profile: ear.Profile, IssuedAt: now.Unix(), Expiry: s.expires.Unix(), Issuer: "verdictd",
		VerifierID: ear.VerifierID{Developer: ear.Developer, Build: b.cfg.Build}, Nonce: s.nonce,
		Submods: map[string]*ear.Appraisal{ear.Submod: appraisal}}
	signed, err := tok.Sign(b.cfg.TokenKey)
	if err != nil {
		b.mu.Lock()
		delete(b.sessions, s.id)
		b.mu.Unlock()
		log.Error("refused", "reason", err.Error())
		return refuse(http.StatusInternalServerError, kbs.ErrAttestation, "issue token: %v", err)
	}
	log.Info("attested", "measurement", primaryMeasurement(res), "measurements", res.Measurements,
		"tcb_status", res.TCBStatus, "debug", res.Debug, "status", appraisal.Status, "violations", appraisal.Violations)
	b.setCookie(w, s)
	return writeJSON(w, map[string]string{"token": signed})
}

// verify checks an Attestation message against session s: evidence that verifies to a trusted
// root, of the session's TEE, whose report data binds the session's nonce and the message's key.
// It returns the result also on a binding failure, for the log.
func (b *Broker) verify(r *http.Request, s *session) (*attestation.Result, *kbs.JWK, *refusal) {
	body, ref := readBody(r, maxAttestationBody)
	if ref != nil {
		return nil, nil, ref
	}
	a, err := kbs.ParseAttestation(s.version, body)
	if err != nil {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "%v", err)
	}
	if a.Version == kbs.Version && subtle.ConstantTimeCompare([]byte(a.Nonce), []byte(s.nonce)) != 1 {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "the runtime data's nonce is not this session's challenge")
	}
	if a.Additional != "" {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "additional evidence (devices) is not verified by verdictd: attest the primary TEE alone")
	}
	want, err := kbs.ReportData(kbs.HashSHA384, s.version, s.nonce, a.Key, a.Additional)
	if err != nil {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "%v", err)
	}
	evidence, err := kbs.UnwrapEvidence(s.tee, a.Evidence)
	if err != nil {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "%v", err)
	}
	v, err := attestation.Detect(evidence)
	if err != nil {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "evidence: %v", err)
	}
	if v.TEE() != s.tee {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "the evidence is %s evidence, but the session was opened for %s", v.TEE(), s.tee)
	}
	res, err := v.Verify(r.Context(), evidence, b.cfg.Options)
	if err != nil {
		return nil, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "evidence did not verify: %v", err)
	}
	if !res.Verified {
		return res, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation, "evidence did not verify")
	}
	if subtle.ConstantTimeCompare(res.ReportData, want[:]) != 1 {
		return res, nil, refuse(http.StatusUnauthorized, kbs.ErrAttestation,
			"the evidence does not bind this session's nonce and TEE key: its report data is %x, the binding is %x", res.ReportData, want[:])
	}
	return res, a.Key, nil
}

func (b *Broker) resource(w http.ResponseWriter, r *http.Request) *refusal {
	path := strings.TrimPrefix(r.URL.EscapedPath(), kbs.ResourcePrefix)
	log := b.cfg.Log.With("step", "resource", "remote", r.RemoteAddr, "resource", path)
	if err := kbs.CheckResourcePath(path); err != nil {
		log.Warn("refused", "reason", err.Error())
		return refuse(http.StatusNotFound, kbs.ErrInvalidPath, "%v", err)
	}
	b.mu.Lock()
	s, ref := b.sessionOf(r, b.cfg.Now())
	if ref == nil && s.state != stateAttested {
		ref = refuse(http.StatusUnauthorized, kbs.ErrAttestation, "the session is not attested: POST %s first", kbs.AttestPath)
	}
	var res *attestation.Result
	var key *kbs.JWK
	if ref == nil {
		res, key = s.result, s.key
	}
	b.mu.Unlock()
	if ref != nil {
		log.Warn("refused", "reason", ref.detail)
		return ref
	}
	log = log.With("session", shortID(s.id), "tee", res.TEE, "measurement", primaryMeasurement(res))
	pol, rule := b.cfg.Policies.For(path)
	if pol == nil {
		ref := refuse(http.StatusForbidden, kbs.ErrPolicyDeny, "no policy releases %s: it has no entry in \"resources\" and there is no \"default\"", path)
		log.Warn("refused", "reason", ref.detail, "rule", "none")
		return ref
	}
	if err := pol.Check(res); err != nil {
		var rules, msgs []string
		for _, v := range policy.Violations(err) {
			rules = append(rules, v.Rule)
			msgs = append(msgs, v.Error())
		}
		sort.Strings(rules)
		ref := refuse(http.StatusForbidden, kbs.ErrPolicyDeny, "policy %s refuses %s: %s", rule, path, strings.Join(msgs, "; "))
		log.Warn("refused", "reason", ref.detail, "rule", rule, "violations", rules, "measurements", res.Measurements)
		return ref
	}
	data, err := b.cfg.Store.Read(path)
	switch {
	case errors.Is(err, ErrNotFound):
		log.Warn("refused", "reason", err.Error(), "rule", rule)
		return refuse(http.StatusNotFound, kbs.ErrResourceMissing, "%v", err)
	case errors.Is(err, ErrRefusedPath):
		log.Warn("refused", "reason", err.Error(), "rule", rule)
		return refuse(http.StatusNotFound, kbs.ErrInvalidPath, "%v", err)
	case err != nil:
		log.Error("refused", "reason", err.Error(), "rule", rule)
		return refuse(http.StatusInternalServerError, kbs.ErrResourceMissing, "resource %s could not be read", path)
	}
	sealed, err := kbs.Seal(key, data)
	if err != nil {
		log.Error("refused", "reason", err.Error(), "rule", rule)
		return refuse(http.StatusInternalServerError, kbs.ErrJWE, "%v", err)
	}
	log.Info("released", "rule", rule, "bytes", len(data), "key_alg", key.Alg)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(sealed)
	return nil
}

// primaryMeasurement is the measurement a log line names: the workload's, by its TEE's name.
func primaryMeasurement(res *attestation.Result) string {
	for _, n := range []string{"mrenclave", "mrtd", "measurement"} {
		if m, ok := res.Measurements[n]; ok {
			return n + ":" + m
		}
	}
	return ""
}

func randomString(n int, enc func([]byte) string) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return enc(b), nil
}

// shortID is enough of a session id to follow it through the log, not enough to use it.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

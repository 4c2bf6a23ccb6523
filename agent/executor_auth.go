package agent

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Executor authentication, as Mesos' --authenticate_http_executors: every
// custom executor gets a token, MESOS_EXECUTOR_AUTHENTICATION_TOKEN, a JWT
// signed with the agent's --jwt_secret_key (HS256) that claims its
// framework (fid), executor (eid) and container (cid). Each call of the
// executor API must carry it as `Authorization: Bearer`, and may only
// speak for the executor it names: one executor (or anyone who can reach
// the agent) cannot forge another's status updates.

// executorRealm is the realm executors authenticate in (Mesos'
// EXECUTOR_HTTP_AUTHENTICATION_REALM).
const executorRealm = "mesos-agent-executor"

// executorTokenEnv carries an executor's token to it.
const executorTokenEnv = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"

// executorClaims are what an executor's token says it is.
type executorClaims struct {
	Framework string `json:"fid"`
	Executor  string `json:"eid"`
	Container string `json:"cid"`
	jwt.RegisteredClaims
}

// executorToken is the token of an executor's run.
func executorToken(key []byte, ex *executor) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, executorClaims{Framework: ex.fw.id, Executor: ex.id, Container: ex.containerID})
	return t.SignedString(key)
}

// authenticateExecutor reads the claims of a request's token; an error is
// a request that did not authenticate.
func authenticateExecutor(key []byte, r *http.Request) (*executorClaims, error) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, errors.New("no bearer token")
	}
	claims := &executorClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// mayActFor says whether the token's claims are those of ex's current run,
// with Mesos' message when they are not.
func (c *executorClaims) mayActFor(ex *executor) error {
	switch {
	case c.Framework != ex.fw.id:
		return fmt.Errorf("Authenticated principal does not contain an 'fid' claim with the framework ID %s, which is set in the call", ex.fw.id)
	case c.Executor != ex.id:
		return fmt.Errorf("Authenticated principal does not contain an 'eid' claim with the executor ID %s, which is set in the call", ex.id)
	case c.Container != ex.containerID:
		return errors.New("Authenticated principal does not contain a 'cid' claim with the correct active ContainerID")
	}
	return nil
}

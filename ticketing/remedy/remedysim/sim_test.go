package remedysim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func login(t *testing.T, base, user, pw string) string {
	resp, err := http.PostForm(base+"/api/jwt/login", url.Values{"username": {user}, "password": {pw}})
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return string(b)
}

func call(t *testing.T, method, u, tok, body string) (int, string) {
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "AR-JWT "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTenancyAndErrors(t *testing.T) {
	sim := New(Options{Users: []User{
		{Name: "admin", Password: "a", Companies: []string{"*"}},
		{Name: "alpha", Password: "b", Companies: []string{"ALPHA"}},
	}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	admin := login(t, srv.URL, "admin", "a")
	create := srv.URL + "/api/arsys/v1/entry/HPD:IncidentInterface_Create?fields=values(Incident%20Number,Request%20ID)"
	body := func(company string) string {
		b, _ := json.Marshal(map[string]any{"values": map[string]string{
			"First_Name": "S", "Last_Name": "I", "Description": "d", "Impact": "4-Minor/Localized", "Urgency": "4-Low",
			"Status": "Assigned", "Reported Source": "Systems Management", "Service_Type": "Infrastructure Event", "Company": company,
		}})
		return string(b)
	}
	for _, c := range []string{"ALPHA", "BETA"} {
		code, b := call(t, http.MethodPost, create, admin, body(c))
		require.Equal(t, http.StatusCreated, code, b)
		require.Contains(t, b, `"Incident Number":"INC`)
	}
	alpha := login(t, srv.URL, "alpha", "b")
	code, b := call(t, http.MethodGet, srv.URL+"/api/arsys/v1/entry/HPD:IncidentInterface", alpha, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, b, `"Company":"ALPHA"`)
	require.NotContains(t, b, "BETA", "a user sees only its companies' entries")
	code, _ = call(t, http.MethodGet, srv.URL+"/api/arsys/v1/entry/HPD:IncidentInterface/000000000000002", alpha, "")
	require.Equal(t, http.StatusNotFound, code)
	code, b = call(t, http.MethodPost, create, alpha, body("BETA"))
	require.Equal(t, http.StatusForbidden, code, b)

	// Required field missing: AR's error body.
	code, b = call(t, http.MethodPost, create, admin, `{"values":{"Company":"ALPHA"}}`)
	require.Equal(t, http.StatusBadRequest, code)
	var errs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(b), &errs))
	require.Equal(t, "ERROR", errs[0]["messageType"])
	require.Equal(t, float64(326), errs[0]["messageNumber"])
	require.Equal(t, "Required field cannot be blank.", errs[0]["messageText"])

	// Qualification search.
	q := url.Values{"q": {`'Company' = "BETA" AND 'Status' = "Assigned"`}}
	code, b = call(t, http.MethodGet, srv.URL+"/api/arsys/v1/entry/HPD:IncidentInterface?"+q.Encode(), admin, "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1, strings.Count(b, `"Incident Number"`))
	q = url.Values{"q": {`'Company' = `}}
	code, _ = call(t, http.MethodGet, srv.URL+"/api/arsys/v1/entry/HPD:IncidentInterface?"+q.Encode(), admin, "")
	require.Equal(t, http.StatusBadRequest, code)

	// Logout ends the token.
	code, _ = call(t, http.MethodPost, srv.URL+"/api/jwt/logout", alpha, "")
	require.Equal(t, http.StatusNoContent, code)
	code, _ = call(t, http.MethodGet, srv.URL+"/api/arsys/v1/entry/HPD:IncidentInterface", alpha, "")
	require.Equal(t, http.StatusUnauthorized, code)
}

package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// Model names. A face call that names a model must name the one it will
// get: its id, its --served-model-name, or one of its aliases; anything
// else is refused (404), so that a client that believes it calls another
// model (LangChain's default text-embedding-ada-002, say) never silently
// gets this model's vectors. MODEL_ACCEPT_ANY accepts every name, and a
// missing one, as TEI's own /v1/embeddings does. Where the API requires a
// model (OpenAI's embeddings, Cohere's v2) a missing one is refused (400);
// where it is optional (Cohere's v1, Jina's) it means the served model.

// modelRole is the model a face call is for.
type modelRole int

const (
	embedModel modelRole = iota
	rankModel
)

// aliases are the extra names of role's model.
func (s *Server) aliases(role modelRole) []string {
	if role == rankModel {
		return s.cfg.RerankModelAliases
	}
	return append(slices.Clone(s.cfg.EmbeddingModelAliases), s.cfg.ModelAliases...)
}

// modelNames lists every name of role's model, served by info: its id, its
// served name when another, then its aliases.
func (s *Server) modelNames(role modelRole, info *tei.Info) []string {
	names := []string{info.ModelID}
	if info.ServedModelName != nil {
		names = append(names, *info.ServedModelName)
	}
	names = append(names, s.aliases(role)...)
	out := names[:0]
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// servesModel reports whether name is a name of role's model.
func (s *Server) servesModel(name string, role modelRole, info *tei.Info) bool {
	return s.cfg.ModelAcceptAny || slices.Contains(s.modelNames(role, info), name)
}

// errModelMissing is a missing model where the face's API requires one.
var errModelMissing = &requestError{status: http.StatusBadRequest, typ: "invalid_request_error", param: "model",
	msg: "you must provide a model parameter"}

// checkModel applies the naming rule to a call's model, nil when the body
// has none; required says whether the face's API requires one. notFound
// words a refused name in the face's own way.
func (s *Server) checkModel(model *string, required bool, role modelRole, info *tei.Info, notFound func(name string) string) error {
	switch {
	case model == nil || *model == "":
		if required && !s.cfg.ModelAcceptAny {
			return errModelMissing
		}
		return nil
	case s.servesModel(*model, role, info):
		return nil
	}
	return &requestError{status: http.StatusNotFound, typ: "model_not_found", param: "model", msg: notFound(*model)}
}

// openAIModel is OpenAI's Model object.
type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func newOpenAIModel(id string) openAIModel {
	return openAIModel{ID: id, Object: "model", OwnedBy: "tei-sidecar"}
}

// listedModels are every name GET /v1/models lists: each ready pool's
// model and its aliases, the embedding model first, each name once. With
// no reranker of its own, rerank calls go to the embedding model, which
// is listed once.
func (s *Server) listedModels() []string {
	roles := []struct {
		role modelRole
		p    *pool
	}{{embedModel, s.embedP}}
	if s.rankP != s.embedP {
		roles = append(roles, struct {
			role modelRole
			p    *pool
		}{rankModel, s.rankP})
	}
	var out []string
	for _, r := range roles {
		info := r.p.info()
		if info == nil {
			continue
		}
		for _, n := range s.modelNames(r.role, info) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// models serves GET /v1/models (the openai SDKs' models.list).
func (s *Server) models(c echo.Context) error {
	list := struct {
		Object string        `json:"object"`
		Data   []openAIModel `json:"data"`
	}{Object: "list", Data: []openAIModel{}}
	for _, id := range s.listedModels() {
		list.Data = append(list.Data, newOpenAIModel(id))
	}
	return writeJSON(c, http.StatusOK, list)
}

// model serves GET /v1/models/{id} (models.retrieve). Ids hold slashes
// (BAAI/bge-m3): the route takes the rest of the path, written plain or
// escaped as %2F.
func (s *Server) model(c echo.Context) error {
	id, err := url.PathUnescape(c.Param("*"))
	if err != nil || id == "" || strings.ContainsRune(id, 0) {
		return s.openAIError(c, &requestError{status: http.StatusNotFound, typ: "model_not_found", param: "model",
			msg: fmt.Sprintf("The model `%s` does not exist", c.Param("*"))})
	}
	if s.cfg.ModelAcceptAny || slices.Contains(s.listedModels(), id) {
		return writeJSON(c, http.StatusOK, newOpenAIModel(id))
	}
	return s.openAIError(c, &requestError{status: http.StatusNotFound, typ: "model_not_found", param: "model",
		msg: fmt.Sprintf("The model `%s` does not exist; this server serves %s", id, strings.Join(s.listedModels(), ", "))})
}

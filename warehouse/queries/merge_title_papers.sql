-- A paper first known only by its title ('t:…') now has an arXiv id: move its history over.
UPDATE sightings SET paper_id = $id WHERE paper_id = $alias;
